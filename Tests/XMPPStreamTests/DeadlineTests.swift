import Storage
import Synchronization
import Testing

/// `withDeadline`, which keeps a store that stopped answering from stopping its caller.
@Suite(.timeLimit(.minutes(1)))
struct DeadlineTests {
    struct Refused: Error, Equatable {}

    @Test func anAnswerOrAnErrorWithinTheDeadlineComesThrough() async throws {
        #expect(try await withDeadline(30) { 42 } == 42)
        await #expect(throws: Refused.self) { try await withDeadline(30) { throw Refused() } }
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
