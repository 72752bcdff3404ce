import Foundation
import Synchronization

/// The node's memory budget (`limits.max_memory_bytes`): its resident set, read from
/// `/proc/self/statm` once a second, against the budget. Past it the node takes no new
/// streams and `/readyz` says why; the sessions it has are served.
final class MemoryBudget: Sendable {
    let budget: Int
    private let resident = Atomic<Int>(0)

    init(budget: Int) {
        self.budget = budget
    }

    /// The resident set at the last sample, in bytes.
    var residentBytes: Int { resident.load(ordering: .relaxed) }

    /// Why a new stream is refused, or `nil`.
    var overBudget: String? {
        guard budget > 0 else { return nil }
        let now = residentBytes
        guard now >= budget else { return nil }
        return "full: \(now / (1 << 20)) MiB resident, the budget is \(budget / (1 << 20)) MiB (limits.max_memory_bytes)"
    }

    /// Samples until cancelled (only with a budget; the metric reads `/proc` itself).
    func run() async {
        guard budget > 0 else { return }
        while !Task.isCancelled {
            resident.store(Self.readResident() ?? 0, ordering: .relaxed)
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// The resident set of this process in bytes (Linux), or `nil`.
    static func readResident() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
