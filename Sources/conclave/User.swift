import ArgumentParser
import Foundation
import Logging
import Scansion
import ServerRuntime
import Storage
import StoragePostgres
import XMPPCore
import XMPPStream

struct User: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage accounts.",
        subcommands: [Add.self, AddFromScripts.self, AddFromFile.self, Passwd.self, Delete.self, List.self]
    )

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an account.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The account's bare JID, e.g. romeo@localhost.") var jid: String
        @OptionGroup var password: PasswordInput

        func run() async throws {
            let account = try parseAccount(jid)
            let configuration = try common.load()
            let secret = try password.read(maxBytes: configuration.auth.maxPasswordBytes)
            let credentials = StoredCredentials.derive(password: secret, iterations: configuration.auth.scramIterations)
            try await withAccounts(common) { store in try await store.createAccount(account, credentials: credentials) }
            print("created \(account)")
        }
    }

    struct AddFromScripts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-from-scripts",
            abstract: "Create (or reset the password of) every [Client] account named in scansion scripts.",
            discussion: "Directories are searched for *.scs files. Run it before conclave-spec."
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "Script files or directories.") var scripts: [String]

        func run() async throws {
            var accounts: [JID: String] = [:]
            let files: [String]
            do {
                files = try ScansionFiles.expand(scripts)
            } catch {
                throw CommandError("\(error)")
            }
            for file in files {
                for client in try ScansionFiles.load(file).clients {
                    let jid = try parseAccount(client.account)
                    if let known = accounts[jid], known != client.password {
                        throw CommandError("\(jid) has two different passwords in the scripts")
                    }
                    accounts[jid] = client.password
                }
            }
            let list = accounts.sorted { $0.key < $1.key }
            let created = try await addOrReset(list, common)
            print("\(list.count) accounts from the scripts: \(created) created, \(list.count - created) already existed")
        }
    }

    struct AddFromFile: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-from-file",
            abstract: "Create (or reset the password of) the accounts listed in a file of 'jid<TAB>password' lines.",
            discussion: "'-' reads standard input, e.g. 'conclave-bench accounts --count 1000 | conclave user add-from-file -'."
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "The file ('-': standard input).") var file: String

        func run() async throws {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else { throw CommandError("cannot read \(file)") }
                text = contents
            }
            var accounts: [JID: String] = [:]
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                let parts = line.split(separator: "\t", maxSplits: 1)
                guard parts.count == 2, !parts[1].isEmpty else {
                    throw CommandError("\(file):\(number + 1): expected 'jid<TAB>password'")
                }
                accounts[try parseAccount(String(parts[0]))] = String(parts[1])
            }
            let list = accounts.sorted { $0.key < $1.key }
            let created = try await addOrReset(list, common)
            print("\(list.count) accounts: \(created) created, \(list.count - created) already existed")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an account's password.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The account's bare JID.") var jid: String
        @OptionGroup var password: PasswordInput

        func run() async throws {
            let account = try parseAccount(jid)
            let configuration = try common.load()
            let secret = try password.read(maxBytes: configuration.auth.maxPasswordBytes)
            let credentials = StoredCredentials.derive(password: secret, iterations: configuration.auth.scramIterations)
            try await withAccounts(common) { store in try await store.updateCredentials(account, credentials: credentials) }
            print("password changed for \(account)")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an account.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The account's bare JID.") var jid: String

        func run() async throws {
            let account = try parseAccount(jid)
            try await withAccounts(common) { store in try await store.deleteAccount(account) }
            print("deleted \(account)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Only accounts of this domain.") var domain: String?

        func run() async throws {
            let accounts = try await withAccounts(common) { store in try await store.listAccounts(domain: domain) }
            for account in accounts { print(account) }
        }
    }
}

func parseAccount(_ text: String) throws -> JID {
    let jid: JID
    do {
        jid = try JID(text)
    } catch {
        throw ValidationError("\(error)")
    }
    guard jid.localpart != nil, jid.isBare else {
        throw ValidationError("an account is a bare JID with a localpart, like romeo@localhost")
    }
    return jid
}

func withAccounts<Result: Sendable>(
    _ common: CommonOptions,
    _ body: @Sendable (PostgresAccountStore) async throws -> Result
) async throws -> Result {
    let configuration = try common.load()
    let logger = common.makeLogger(configuration)
    let directory = try configuration.resolvedMigrationsDirectory()
    do {
        return try await withDatabase(configuration, logger: logger) { client in
            try await Migrator(directory: directory).migrate(client: client, logger: logger)
            return try await body(PostgresAccountStore(client: client, logger: logger))
        }
    } catch let error as AccountStoreError {
        throw CommandError(error.description)
    }
}

/// A failure to report as it is, without the usage text ArgumentParser adds to
/// validation errors.
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Creates each account, or resets its password when it exists; returns how many were new.
private func addOrReset(_ list: [(key: JID, value: String)], _ common: CommonOptions) async throws -> Int {
    let configuration = try common.load()
    let iterations = configuration.auth.scramIterations
    for (jid, password) in list {
        do {
            _ = try PasswordInput.checked(password, maxBytes: configuration.auth.maxPasswordBytes)
        } catch let error as CommandError {
            throw CommandError("\(jid): \(error.description)")
        }
    }
    return try await withAccounts(common) { store in
        var created = 0
        for (jid, password) in list {
            let credentials = StoredCredentials.derive(password: password, iterations: iterations)
            do {
                try await store.createAccount(jid, credentials: credentials)
                created += 1
            } catch AccountStoreError.accountExists {
                try await store.updateCredentials(jid, credentials: credentials)
            }
        }
        return created
    }
}
