import PostgresNIO
import Storage

/// Tells a PostgreSQL error that may pass on a later try from one that never will.
///
/// Retrying a refused statement forever wedges whoever waits behind it, so only what
/// can change without us is retried: the connection (SQLSTATE class 08), transaction
/// conflicts (40: serialization failure, deadlock), lack of resources (53), operator
/// intervention and cancelled statements (57), system errors (58), a lock not
/// available (55P03), and anything that is not an answer from the server (a closed
/// connection, a timeout). Everything else the server answers — data exceptions (22),
/// constraint violations (23), program limits such as an index row too large (54),
/// syntax or schema errors (42) — is final.
enum PostgresErrorKind {
    /// The SQLSTATE of a server error, looking inside a failed transaction.
    static func sqlState(of error: any Error) -> String? {
        if let error = error as? PSQLError {
            guard error.code == .server else { return nil }
            return error.serverInfo?[.sqlState]
        }
        if let error = error as? PostgresTransactionError {
            for inner in [error.closureError, error.beginError, error.commitError] {
                if let inner, let state = sqlState(of: inner) { return state }
            }
        }
        return nil
    }

    /// Whether retrying `sqlState` can never help.
    static func isPermanent(sqlState: String) -> Bool {
        let transientClasses = ["08", "40", "53", "57", "58"]
        if transientClasses.contains(where: sqlState.hasPrefix) || sqlState == "55P03" { return false }
        return true
    }

    /// `error` as a `PermanentStoreError` when it is final; `nil` when a later try may pass.
    static func permanent(_ error: any Error) -> PermanentStoreError? {
        if let error = error as? PermanentStoreError { return error }
        guard let state = sqlState(of: error), isPermanent(sqlState: state) else { return nil }
        return PermanentStoreError("SQLSTATE \(state): \(message(of: error) ?? "no message")")
    }

    private static func message(of error: any Error) -> String? {
        if let error = error as? PSQLError { return error.serverInfo?[.message] }
        if let error = error as? PostgresTransactionError {
            for inner in [error.closureError, error.beginError, error.commitError] {
                if let inner, let text = message(of: inner) { return text }
            }
        }
        return nil
    }
}
