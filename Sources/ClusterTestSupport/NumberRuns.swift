/// The runs of consecutive numbers in `numbers`, in the order given: `[1, 2, 3, 7, 5]` →
/// `["1-3", "7", "5"]` (with `prefix` "#": `["#1-3", "#7", "#5"]`). For messages about
/// numbered messages that went missing, arrived twice or out of order; sort first for
/// plain ranges.
public func numberRuns(_ numbers: [Int], prefix: String = "") -> [String] {
    var parts: [String] = []
    var start: Int?
    var last: Int?
    for number in numbers {
        if let l = last, number == l + 1 {
            last = number
            continue
        }
        if let s = start, let l = last { parts.append(s == l ? "\(prefix)\(s)" : "\(prefix)\(s)-\(l)") }
        start = number
        last = number
    }
    if let s = start, let l = last { parts.append(s == l ? "\(prefix)\(s)" : "\(prefix)\(s)-\(l)") }
    return parts
}
