import ArgumentParser
import Foundation
import XMPPStream

#if canImport(Glibc)
import Glibc
#endif

/// Where `conclave user add` and `passwd` take a password from: a file, the terminal
/// (asked twice, not echoed), standard input, or the command line. A password on the
/// command line is visible to every local user in `ps` and stays in the shell's history,
/// so the other ways come first in the help.
struct PasswordInput: ParsableArguments {
    @Option(
        name: .customLong("password-file"),
        help: ArgumentHelp("Read the password from the first line of this file.", valueName: "path")
    )
    var file: String?

    @Option(
        name: .customLong("password"),
        help: """
            The password. Visible to other users in `ps` and kept in your shell history: prefer \
            --password-file or the prompt. Without either, a terminal is asked twice (without echo); \
            otherwise one line is read from standard input.
            """
    )
    var value: String?

    /// The password, checked against `maxBytes` (the longest one the server accepts).
    func read(maxBytes: Int) throws -> String {
        let password: String
        switch (value, file) {
        case (.some, .some):
            throw ValidationError("give --password or --password-file, not both")
        case (.some(let value), nil):
            password = value
        case (nil, .some(let path)):
            password = try Self.firstLine(ofFile: path)
        case (nil, nil):
            if isatty(STDIN_FILENO) == 1 {
                let first = try TerminalPrompt.readSecret("Password: ")
                let second = try TerminalPrompt.readSecret("Password (again): ")
                guard first == second else { throw CommandError("the passwords do not match") }
                password = first
            } else {
                guard let line = readLine(strippingNewline: true) else {
                    throw CommandError("no password: use --password-file, a terminal, or write it on standard input")
                }
                password = line
            }
        }
        return try Self.checked(password, maxBytes: maxBytes)
    }

    /// The first line of a file, without its line ending.
    static func firstLine(ofFile path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandError("cannot read the password file \(path)")
        }
        // Bytes, not Characters: "\r\n" is one Character and would not split at "\n".
        var line = Array(data.prefix { $0 != UInt8(ascii: "\n") })
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard let text = String(validating: line, as: UTF8.self) else {
            throw CommandError("the password file \(path) is not UTF-8")
        }
        return text
    }

    /// Refuses what could never log in: an empty password, one longer than the server
    /// accepts, and one SASLprep (RFC 4013) prohibits (control characters and the like).
    static func checked(_ password: String, maxBytes: Int) throws -> String {
        if password.isEmpty { throw CommandError("the password is empty") }
        let bytes = password.utf8.count
        if bytes > maxBytes {
            throw CommandError(
                "the password is \(bytes) bytes long; at most \(maxBytes) are accepted (auth.max_password_bytes)"
            )
        }
        guard isValidPassword(password) else {
            throw CommandError(
                "the password has characters SASLprep (RFC 4013) prohibits, such as control characters"
            )
        }
        return password
    }
}
