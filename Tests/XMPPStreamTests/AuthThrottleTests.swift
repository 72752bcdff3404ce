import NIOCore
import Testing
import XMPPCore

@testable import XMPPStream

@Suite struct AuthThrottleTests {
    @Test func failuresBeyondTheAllowanceAreDelayedMoreAndMore() throws {
        let throttle = AuthThrottle()
        var options = C2SConfiguration.Options()
        options.authFailuresBeforeDelay = 2
        options.authFailureDelayStep = .milliseconds(100)
        options.authFailureMaxDelay = .milliseconds(250)
        let account = try JID("romeo@localhost")
        let delays = (0..<5).map { _ in throttle.recordFailure(account, options: options) }
        #expect(delays == [.zero, .zero, .milliseconds(100), .milliseconds(200), .milliseconds(250)])
        #expect(throttle.failures(of: account) == 5)
        // Another account is not affected.
        #expect(throttle.recordFailure(try JID("juliet@localhost"), options: options) == .zero)
        throttle.recordSuccess(account)
        #expect(throttle.failures(of: account) == 0)
        #expect(throttle.recordFailure(account, options: options) == .zero)
    }

    @Test func unknownAccountsAreNotTracked() {
        let throttle = AuthThrottle()
        #expect(throttle.recordFailure(nil, options: .init()) == .zero)
    }
}
