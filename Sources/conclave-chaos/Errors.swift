/// Something that kept the harness itself from going on (a missing binary, a database
/// it cannot reach at start): not a finding about the product.
struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A check that failed: a finding about the product. The run stops at the first one.
struct CheckFailure: Error, CustomStringConvertible {
    /// Which check ("join answered", "delivery", "epochs", …).
    var check: String
    var detail: String

    init(_ check: String, _ detail: String) {
        self.check = check
        self.detail = detail
    }

    var description: String { "\(check): \(detail)" }
}
