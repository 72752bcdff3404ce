// One stanza fed to a stream parser whose stream is already open, as
// C2SConnection does with every read: the bytes go in through
// parse(UnsafeRawBufferPointer) and the completed element comes out. One scaled
// iteration = one stanza.
import AllocationBenchmarkSupport
import Benchmark
import XMPPCore
import XMPPXMLParser

/// A client's groupchat message to a room, 238 bytes.
let groupchatMessage = Array(
    """
    <message to='lounge@conference.example.org' type='groupchat' id='a1b2c3d4-e5f6-4711-9c2d-000000000042'>\
    <body>Has anyone looked at the deploy logs from last night yet?</body>\
    <active xmlns='http://jabber.org/protocol/chatstates'/></message>
    """.utf8
)

/// An occupant's presence update (status and show), 175 bytes.
let presenceUpdate = Array(
    """
    <presence to='lounge@conference.example.org/alice' id='p-0001'>\
    <show>away</show><status>In a meeting until three</status>\
    <x xmlns='http://jabber.org/protocol/muc'/></presence>
    """.utf8
)

let streamHeader = Array(
    """
    <?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
    to='example.org' version='1.0'>
    """.utf8
)

/// A parser past the stream header, checked to turn `stanza` into exactly one element.
func openParser(checking stanza: [UInt8]) -> XMLStreamParser {
    let parser = XMLStreamParser()
    do {
        let opened = try parser.parse(streamHeader)
        guard case .streamOpen? = opened.first else { fatalError("no stream header event") }
        let events = try parser.parse(stanza)
        guard events.count == 1, case .element(let element) = events[0], element.stanzaKind != nil else {
            fatalError("expected one stanza, got \(events)")
        }
    } catch {
        fatalError("\(error)")
    }
    return parser
}

func feed(_ parser: XMLStreamParser, _ stanza: [UInt8], _ benchmark: Benchmark) {
    stanza.withUnsafeBytes { bytes in
        for _ in benchmark.scaledIterations {
            do {
                blackHole(try parser.parse(bytes))
            } catch {
                fatalError("\(error)")
            }
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = allocationBenchmarkConfiguration()

    let messageParser = openParser(checking: groupchatMessage)
    Benchmark("Parse groupchat message (\(groupchatMessage.count) B), per stanza") { benchmark in
        feed(messageParser, groupchatMessage, benchmark)
    }

    let presenceParser = openParser(checking: presenceUpdate)
    Benchmark("Parse presence (\(presenceUpdate.count) B), per stanza") { benchmark in
        feed(presenceParser, presenceUpdate, benchmark)
    }
}
