import Foundation
import Synchronization

/// The node's memory budget (`limits.max_memory_bytes`): its resident set, read from
/// `/proc/self/statm` once a second, against the budget. Past it the node takes no new
/// streams and `/readyz` says why; the sessions it has are served.
final class MemoryBudget: Sendable {
    let budget: Int
    private let resident = Atomic<Int>(0)
    /// Past the budget: set when the resident set reaches it, cleared once it is below
    /// 90 % of it (memory freed is not always returned at once: no flapping at the edge).
    private let full = Atomic<Bool>(false)

    init(budget: Int) {
        self.budget = budget
    }

    /// The resident set at the last sample, in bytes.
    var residentBytes: Int { resident.load(ordering: .relaxed) }

    /// Why a new stream is refused, or `nil`.
    var overBudget: String? {
        guard budget > 0, full.load(ordering: .relaxed) else { return nil }
        let now = residentBytes
        return "full: \(now / (1 << 20)) MiB resident, the budget is \(budget / (1 << 20)) MiB (limits.max_memory_bytes)"
    }

    /// Samples until cancelled (only with a budget; the metric reads `/proc` itself).
    func run() async {
        guard budget > 0 else { return }
        while !Task.isCancelled {
            let now = Self.readResident() ?? 0
            resident.store(now, ordering: .relaxed)
            if now >= budget {
                full.store(true, ordering: .relaxed)
            } else if now < budget / 10 * 9 {
                full.store(false, ordering: .relaxed)
            }
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
