import Foundation
import Testing
import XMPPCore
import XMPPStream
import StoragePostgres

#if canImport(Glibc)
import Glibc
#endif

/// `conclave user add` / `passwd` as an operator runs them: the built binary against the
/// test database, then a real login with the password it was given.
@Suite(.enabled(if: TestEnvironment.hasDatabase), .timeLimit(.minutes(2)))
struct UserCommandTests {
    @Test func addWithPasswordFileThenLogIn() async throws {
        let account = try uniqueAccount()
        let password = "file-" + UUID().uuidString
        // The first line is the password: its line ending and whatever follows are not.
        let file = try temporaryFile("\(password)\nnot part of it\n")
        let added = try await runConclave(["user", "add", account.description, "--password-file", file])
        #expect(added.status == 0, "\(added)")
        #expect(added.output.contains("created \(account)"))
        try await withNode { node in
            for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
                let client = try await node.login(account, password: password, mechanism: mechanism)
                #expect(try await client.ping().type == "result")
                await client.close()
            }
            await #expect(throws: (any Error).self) {
                _ = try await node.login(account, password: password + "\nnot part of it", mechanism: "PLAIN")
            }
        }
    }

    @Test func passwdWithPasswordFileWithCRLF() async throws {
        let account = try uniqueAccount()
        let first = try temporaryFile("old-password\n")
        #expect(try await runConclave(["user", "add", account.description, "--password-file", first]).status == 0)
        let second = try temporaryFile("new-password\r\n")
        let changed = try await runConclave(["user", "passwd", account.description, "--password-file", second])
        #expect(changed.status == 0, "\(changed)")
        try await withNode { node in
            let client = try await node.login(account, password: "new-password", mechanism: "SCRAM-SHA-256")
            await client.close()
            await #expect(throws: (any Error).self) {
                _ = try await node.login(account, password: "old-password", mechanism: "SCRAM-SHA-256")
            }
        }
    }

    @Test func refusesAPasswordLongerThanTheServerAccepts() async throws {
        let account = try uniqueAccount()
        let file = try temporaryFile(String(repeating: "x", count: 1025) + "\n")
        let result = try await runConclave(["user", "add", account.description, "--password-file", file])
        #expect(result.status != 0)
        #expect(result.errors.contains("1025 bytes"), "\(result)")
        #expect(result.errors.contains("at most 1024"), "\(result)")
        let accounts = try await TestDatabase.shared.accounts().listAccounts(domain: "localhost")
        #expect(!accounts.contains(account))
        // Exactly the limit is fine.
        let limit = try temporaryFile(String(repeating: "y", count: 1024))
        #expect(try await runConclave(["user", "add", account.description, "--password-file", limit]).status == 0)
    }

    @Test func refusesAPasswordSASLprepProhibits() async throws {
        let account = try uniqueAccount()
        let file = try temporaryFile("bell\u{07}password\n")
        let result = try await runConclave(["user", "add", account.description, "--password-file", file])
        #expect(result.status != 0)
        #expect(result.errors.contains("SASLprep"), "\(result)")
    }

    @Test func refusesBothPasswordAndPasswordFile() async throws {
        let account = try uniqueAccount()
        let file = try temporaryFile("one\n")
        let result = try await runConclave(["user", "add", account.description, "--password", "two", "--password-file", file])
        #expect(result.status != 0)
        #expect(result.errors.contains("not both"), "\(result)")
    }

    @Test func helpSaysACommandLinePasswordIsVisible() async throws {
        let help = try await runConclave(["user", "add", "--help"])
        #expect(help.output.contains("--password-file"))
        #expect(help.output.contains("`ps`"))
    }

    /// On a terminal the password is asked twice and what is typed is not echoed.
    @Test func promptOnATerminalDoesNotEcho() async throws {
        let account = try uniqueAccount()
        let password = "typed-" + UUID().uuidString
        let terminal = try PseudoTerminal()
        let run = try startConclave(["user", "add", account.description], terminal: terminal)
        try terminal.waitFor("Password: ")
        terminal.type(password + "\n")
        try terminal.waitFor("Password (again): ")
        terminal.type(password + "\n")
        let result = try await run.finish()
        terminal.readRest()
        #expect(result.status == 0, "\(result) terminal: \(terminal.seen)")
        #expect(!terminal.seen.contains(password), "the password was echoed: \(terminal.seen)")
        try await withNode { node in
            let client = try await node.login(account, password: password, mechanism: "SCRAM-SHA-256")
            await client.close()
        }
    }

    @Test func promptRefusesTwoDifferentPasswords() async throws {
        let account = try uniqueAccount()
        let terminal = try PseudoTerminal()
        let run = try startConclave(["user", "add", account.description], terminal: terminal)
        try terminal.waitFor("Password: ")
        terminal.type("one-password\n")
        try terminal.waitFor("Password (again): ")
        terminal.type("another-password\n")
        let result = try await run.finish()
        #expect(result.status != 0)
        try terminal.waitFor("do not match")
        let accounts = try await TestDatabase.shared.accounts().listAccounts(domain: "localhost")
        #expect(!accounts.contains(account))
    }

    // MARK: - Running the binary

    private func uniqueAccount() throws -> JID {
        try JID(localpart: "cli" + String(UInt64.random(in: 0...UInt64.max), radix: 36), domainpart: "localhost")
    }

    private func temporaryFile(_ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("password-\(UUID().uuidString)").path
        guard FileManager.default.createFile(atPath: path, contents: Data(contents.utf8), attributes: [.posixPermissions: 0o600])
        else { throw TestFailure("cannot write \(path)") }
        return path
    }

    private func runConclave(_ arguments: [String]) async throws -> CLIResult {
        try await startConclave(arguments, terminal: nil).finish()
    }

    private func startConclave(_ arguments: [String], terminal: PseudoTerminal?) throws -> CLIRun {
        let url = try #require(TestEnvironment.databaseURL)
        var full = arguments
        if !arguments.contains("--help") { full += ["--database-url", url, "--log-level", "warning"] }
        return try CLIRun(full, terminal: terminal)
    }
}

struct CLIResult: CustomStringConvertible {
    var status: Int32
    var output: String
    var errors: String
    var description: String { "exit \(status)\nstdout:\n\(output)\nstderr:\n\(errors)" }
}

/// The built `conclave` running in the repository (for ./migrations), without our CONCLAVE_*
/// variables; standard input and error on a pseudo-terminal when one is given.
final class CLIRun: @unchecked Sendable {
    private let process = Process()
    private let outPath: String
    private let errPath: String
    private let exited: AsyncStream<Int32>

    init(_ arguments: [String], terminal: PseudoTerminal?) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)").path
        outPath = scratch + ".out"
        errPath = scratch + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: TestEnvironment.repositoryRoot + "/.build/debug/conclave")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONCLAVE_") }
        process.currentDirectoryURL = URL(fileURLWithPath: TestEnvironment.repositoryRoot)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        if let terminal {
            process.standardInput = terminal.subordinate
            process.standardError = terminal.subordinate
        } else {
            process.standardInput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        exited = stream
        process.terminationHandler = { process in
            continuation.yield(process.terminationStatus)
            continuation.finish()
        }
        try process.run()
        terminal?.closeSubordinate()
    }

    func finish() async throws -> CLIResult {
        var status: Int32?
        for await value in exited { status = value }
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        guard let status else { throw TestFailure("conclave did not report an exit status") }
        return CLIResult(status: status, output: output, errors: errors)
    }
}

/// A pseudo-terminal: the child gets the subordinate side as its terminal, the test
/// reads what it shows (prompts and any echo) and types on the primary side.
final class PseudoTerminal: @unchecked Sendable {
    private let primary: Int32
    let subordinate: FileHandle
    private(set) var seen = ""

    init() throws {
        // posix_openpt and friends are not visible from Swift's Glibc module: the Linux
        // ioctls behind them (TIOCSPTLCK, TIOCGPTN) do the same.
        primary = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard primary >= 0, ioctl(primary, UInt(0x4004_5431), &unlock) == 0, ioctl(primary, UInt(0x8004_5430), &number) == 0
        else {
            throw TestFailure("no pseudo-terminal: errno \(errno)")
        }
        let name = "/dev/pts/\(number)"
        let fd = open(name, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw TestFailure("cannot open \(name): errno \(errno)") }
        subordinate = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    deinit { close(primary) }

    func closeSubordinate() { try? subordinate.close() }

    func type(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(primary, $0.baseAddress, $0.count) }
    }

    /// Reads what is left to show once the child has ended.
    func readRest() {
        while true {
            var descriptor = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 1000) > 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { read(primary, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            seen += String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }

    /// Reads what the terminal shows until `text` has appeared (at most 10 s).
    func waitFor(_ text: String) throws {
        let deadline = Date().addingTimeInterval(10)
        while !seen.contains(text) {
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            var descriptor = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard remaining > 0, poll(&descriptor, 1, remaining) > 0 else {
                throw TestFailure("the terminal never showed \(text.debugDescription); it showed \(seen.debugDescription)")
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { read(primary, $0.baseAddress, $0.count) }
            guard count > 0 else {
                throw TestFailure("the terminal closed before showing \(text.debugDescription); it showed \(seen.debugDescription)")
            }
            seen += String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }
}
