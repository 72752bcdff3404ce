import NIOCore
import Testing
import XMPPCore

@testable import XMPPStream

/// The throttle decides the delay when an attempt starts, before its outcome is known:
/// from the failures and the attempts in flight of its account and of its address.
@Suite struct AuthThrottleTests {
    static var options: C2SConfiguration.Options {
        var options = C2SConfiguration.Options()
        options.authFailuresBeforeDelay = 2
        options.authFailuresBeforeDelayPerAddress = 4
        options.authFailureDelayStep = .milliseconds(100)
        options.authFailureMaxDelay = .milliseconds(250)
        options.maxParallelAuthPerAddress = 3
        return options
    }

    /// One failed attempt after another, each from a new address so only the account counts.
    @Test func failuresOfAnAccountDelayItsLaterAttemptsMoreAndMore() throws {
        let throttle = AuthThrottle()
        let account = try JID("romeo@localhost")
        var delays: [TimeAmount] = []
        for index in 0..<5 {
            let (attempt, delay) = try #require(throttle.begin(account: account, address: "10.0.0.\(index)", options: Self.options))
            delays.append(delay)
            throttle.finish(attempt, succeeded: false, options: Self.options)
        }
        #expect(delays == [.zero, .zero, .milliseconds(100), .milliseconds(200), .milliseconds(250)])
        #expect(throttle.failures(of: account) == 5)
        // Another account is not affected; a success clears the account's record.
        #expect(throttle.begin(account: try JID("juliet@localhost"), address: "10.0.1.1", options: Self.options)?.delay == .zero)
        let (attempt, delay) = try #require(throttle.begin(account: account, address: "10.0.2.1", options: Self.options))
        #expect(delay == .milliseconds(250), "the right password waits as long as a wrong one")
        throttle.finish(attempt, succeeded: true, options: Self.options)
        #expect(throttle.failures(of: account) == 0)
    }

    /// Attempts in flight count as failures until they end: a burst in parallel is slowed
    /// as much as the same attempts one after another.
    @Test func attemptsInParallelOnOneAccountAreDelayed() throws {
        let throttle = AuthThrottle()
        let account = try JID("romeo@localhost")
        let delays = try (0..<4).map { index in
            try #require(throttle.begin(account: account, address: "10.0.0.\(index)", options: Self.options)).delay
        }
        #expect(delays == [.zero, .zero, .milliseconds(100), .milliseconds(200)])
    }

    /// Guessing many accounts from one address is slowed by the address's record, and a
    /// success on an account of its own does not clear it.
    @Test func failuresFromOneAddressDelayEveryAccount() throws {
        let throttle = AuthThrottle()
        for index in 0..<6 {
            let account = try JID("user\(index)@localhost")
            let (attempt, _) = try #require(throttle.begin(account: account, address: "192.0.2.7", options: Self.options))
            throttle.finish(attempt, succeeded: index == 5, options: Self.options)
        }
        #expect(throttle.failures(from: "192.0.2.7") == 5)
        let fresh = try JID("nobody@localhost")
        #expect(throttle.begin(account: fresh, address: "192.0.2.7", options: Self.options)?.delay == .milliseconds(200))
        #expect(throttle.begin(account: fresh, address: "192.0.2.8", options: Self.options)?.delay == .zero)
    }

    @Test func anAddressMayHaveOnlySoManyAttemptsInFlight() throws {
        let throttle = AuthThrottle()
        let attempts = try (0..<3).map { index in
            try #require(throttle.begin(account: try JID("u\(index)@localhost"), address: "192.0.2.9", options: Self.options))
        }
        #expect(throttle.begin(account: nil, address: "192.0.2.9", options: Self.options) == nil)
        throttle.finish(attempts[0].attempt, succeeded: true, options: Self.options)
        #expect(throttle.begin(account: nil, address: "192.0.2.9", options: Self.options) != nil)
    }
}
