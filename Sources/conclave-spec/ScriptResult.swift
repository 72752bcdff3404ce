import Foundation
import XMPPCore

struct ScriptResult: Sendable {
    enum Outcome: Sendable, Hashable {
        case passed
        case failed(step: Int, line: Int, reason: String)
        case skipped
    }

    var path: String
    var title: String
    var outcome: Outcome
    var duration: Duration

    /// `PASS name` or `FAIL name: step N (line L): reason`.
    var line: String {
        switch outcome {
        case .passed: "PASS \(path)"
        case .skipped: "SKIP \(path)"
        case .failed(let step, let line, let reason): "FAIL \(path): step \(step) (line \(line)): \(reason)"
        }
    }
}

struct JUnitReport {
    var results: [ScriptResult]

    var xml: String {
        let failures = results.filter { if case .failed = $0.outcome { true } else { false } }.count
        let skipped = results.filter { $0.outcome == .skipped }.count
        let total = results.reduce(Duration.zero) { $0 + $1.duration }
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuite name=\"conclave-spec\" tests=\"\(results.count)\" failures=\"\(failures)\" "
        out += "skipped=\"\(skipped)\" time=\"\(seconds(total))\">\n"
        for result in results {
            out += "  <testcase classname=\"\(XMLEscaping.escapeAttribute(result.path))\" "
            out += "name=\"\(XMLEscaping.escapeAttribute(result.title))\" time=\"\(seconds(result.duration))\""
            switch result.outcome {
            case .passed:
                out += "/>\n"
            case .skipped:
                out += "><skipped/></testcase>\n"
            case .failed(let step, let line, let reason):
                let message = "step \(step) (line \(line))"
                out += "><failure message=\"\(XMLEscaping.escapeAttribute(message))\">"
                out += XMLEscaping.escapeText(reason)
                out += "</failure></testcase>\n"
            }
        }
        out += "</testsuite>\n"
        return out
    }

    private func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.3f", Double(seconds) + Double(attoseconds) / 1e18)
    }
}
