import Storage
import Synchronization
import Testing
import XMPPCore

/// `withDeadline`, which keeps a store that stopped answering from stopping its caller.
@Suite(.timeLimit(.minutes(1)))
struct DeadlineTests {
    struct Refused: Error, Equatable {}

    @Test func anAnswerOrAnErrorWithinTheDeadlineComesThrough() async throws {
        #expect(try await withDeadline(30) { 42 } == 42)
        await #expect(throws: Refused.self) { try await withDeadline(30) { throw Refused() } }
    }

    @Test func theDeadlinesTimerIsGoneOnceTheBodyAnswered() async throws {
        let clock = ManualClock()
        #expect(try await withDeadline(30, clock: .manual(clock)) { 7 } == 7)
        #expect(clock.deadlines.isEmpty, "no timer left sleeping")
        await #expect(throws: Refused.self) { try await withDeadline(30, clock: .manual(clock)) { throw Refused() } }
        #expect(clock.deadlines.isEmpty)
    }

    @Test func aBodyThatHangsIsGivenUpOnTheCallersClock() async throws {
        let clock = ManualClock()
        let (never, _) = AsyncStream.makeStream(of: Int.self)
        let call = Task {
            try await withDeadline(5, clock: .manual(clock)) { () async throws -> Int in
                for await value in never { return value }
                return 0
            }
        }
        await clock.deadlines { $0 == [.seconds(5)] }
        clock.advance(by: .seconds(5))
        await #expect(throws: StoreTimeout.self) { try await call.value }
    }

    @Test func aBodyThatHangsIsGivenUpAndCancelled() async throws {
        let (cancelled, signal) = AsyncStream.makeStream(of: Bool.self)
        let error = await #expect(throws: StoreTimeout.self) {
            try await withDeadline(0.05) { () async throws -> Int in
                // Hangs until cancelled: a query on a connection PostgreSQL dropped.
                let (never, _) = AsyncStream.makeStream(of: Int.self)
                for await value in never { return value }
                signal.yield(Task.isCancelled)
                return 0
            }
        }
        #expect(error?.seconds == 0.05)
        var iterator = cancelled.makeAsyncIterator()
        #expect(await iterator.next() == true, "the hung body is cancelled when given up")
    }
}
