import ConclaveFuzzing
import Foundation
import Testing

/// The fuzz targets (docs/fuzzing.md), briefly: every input of the committed corpus in
/// Tests/Fuzz/corpus/<target>/, then a few thousand seeded mutations of them. A
/// finding names the corpus file, or the mutation, whose bytes are written under
/// .conclave/fuzz/failures/ so that `make fuzz`'s libFuzzer targets can replay them.
@Suite struct FuzzCorpusTests {
    @Test(arguments: FuzzTarget.allCases)
    func corpusInputsBreakNothing(target: FuzzTarget) throws {
        let corpus = try target.corpus()
        #expect(corpus.count >= 20, "the \(target.rawValue) corpus is missing or too small")
        for (name, bytes) in corpus {
            do {
                try target.run(bytes)
            } catch {
                Issue.record("\(target.rawValue) corpus \(name): \(error)")
            }
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func seededMutationsBreakNothing(target: FuzzTarget) throws {
        let corpus = try target.corpus().map(\.1)
        try #require(!corpus.isEmpty)
        var mutator = Mutator(seed: 0xC0_4C1A_5E ^ UInt64(target.rawValue.utf8.count))
        for index in 0..<target.mutations {
            let input = mutator.mutate(corpus[index % corpus.count], corpus: corpus)
            do {
                try target.run(input)
            } catch {
                let file = FuzzTarget.failures.appendingPathComponent("\(target.rawValue)-mutation-\(index)")
                try? FileManager.default.createDirectory(at: FuzzTarget.failures, withIntermediateDirectories: true)
                try? Data(input).write(to: file)
                Issue.record("\(target.rawValue) mutation \(index) (input in \(file.path)): \(error)")
                return
            }
        }
    }
}

enum FuzzTarget: String, CaseIterable, Sendable {
    case streamParser = "stream-parser"
    case roundTrip = "round-trip"
    case room

    func run(_ bytes: [UInt8]) throws(FuzzFinding) {
        switch self {
        case .streamParser: try StreamParserTarget.run(bytes)
        case .roundTrip: try RoundTripTarget.run(bytes)
        case .room: try RoomTarget.run(bytes)
        }
    }

    /// How many mutations `make test` runs: a few seconds each in a debug build.
    var mutations: Int {
        switch self {
        case .streamParser: 3000
        case .roundTrip: 3000
        case .room: 1500
        }
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let corpusRoot = repository.appendingPathComponent("Tests/Fuzz/corpus")
    /// Where a failing mutation is written, to replay it (`Fuzz/.build…/FuzzRoom <file>`).
    static let failures = repository.appendingPathComponent(".conclave/fuzz/failures")

    /// The committed inputs, by file name, in name order.
    func corpus() throws -> [(String, [UInt8])] {
        let directory = Self.corpusRoot.appendingPathComponent(rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }
        return try names.sorted().map { name in
            (name, Array(try Data(contentsOf: directory.appendingPathComponent(name))))
        }
    }
}

/// libFuzzer's simplest mutations, replayable: byte changes, insertions of XML tokens,
/// erasures, copies within the input and splices with another corpus input.
struct Mutator {
    var random: SplitMix

    init(seed: UInt64) { random = SplitMix(seed: seed) }

    static let tokens: [[UInt8]] = [
        "<", ">", "/>", "</", "'", "\"", "&", "&amp;", "&#38;", "&#x1D11E;", "&#0;", "<![CDATA[", "]]>", "<!--", "<?",
        "xmlns='urn:a'", "xmlns:p='urn:p'", " p:a='1'", " q:a='2'", " xml:lang='en'", "xmlns:stream=", "stream:",
        "<message>", "</message>", "<presence/>", "<iq type='get'>", "</stream:stream>", "\u{0}", "\r\n", "é",
        "\u{FEFF}",
    ].map { Array($0.utf8) }

    mutating func mutate(_ base: [UInt8], corpus: [[UInt8]]) -> [UInt8] {
        var bytes = base
        for _ in 0..<(1 + random.below(4)) {
            let position = random.below(bytes.count + 1)
            switch random.below(6) {
            case 0 where !bytes.isEmpty:
                bytes[min(position, bytes.count - 1)] = UInt8(truncatingIfNeeded: random.next())
            case 1:
                bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: position)
            case 2:
                bytes.insert(contentsOf: Self.tokens[random.below(Self.tokens.count)], at: position)
            case 3 where !bytes.isEmpty:
                let end = min(bytes.count, position + 1 + random.below(16))
                bytes.removeSubrange(min(position, bytes.count - 1)..<end)
            case 4 where !bytes.isEmpty:
                let start = random.below(bytes.count)
                let end = min(bytes.count, start + 1 + random.below(32))
                bytes.insert(contentsOf: bytes[start..<end], at: position)
            default:
                let other = corpus[random.below(corpus.count)]
                guard !other.isEmpty else { continue }
                let start = random.below(other.count)
                bytes.insert(contentsOf: other[start..<min(other.count, start + 1 + random.below(64))], at: position)
            }
        }
        return bytes
    }
}
