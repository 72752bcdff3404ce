import Testing
import XMPPDiscovery

@Suite("SRV order (RFC 2782, XEP-0368)")
struct SRVOrderTests {
    let nodes = [
        SRVRecord(priority: 10, weight: 1, port: 5222, target: "node1"),
        SRVRecord(priority: 10, weight: 1, port: 5232, target: "node2"),
        SRVRecord(priority: 10, weight: 2, port: 5242, target: "node3"),
    ]

    @Test("within a priority, a record comes first in proportion to its weight")
    func weights() {
        var generator = SeededGenerator(seed: 42)
        var first: [String: Int] = [:]
        let draws = 20_000
        for _ in 0..<draws {
            let order = XMPPServiceRecords.weightedOrder(nodes, using: &generator)
            #expect(Set(order) == Set(nodes))
            first[order[0].target, default: 0] += 1
        }
        let share = first.mapValues { Double($0) / Double(draws) }
        #expect(abs(share["node1", default: 0] - 0.25) < 0.02)
        #expect(abs(share["node2", default: 0] - 0.25) < 0.02)
        #expect(abs(share["node3", default: 0] - 0.50) < 0.02)
    }

    @Test("weight 0 records come last unless every weight is 0")
    func zeroWeights() {
        var generator = SeededGenerator(seed: 7)
        let records = [
            SRVRecord(priority: 1, weight: 0, port: 1, target: "spare"),
            SRVRecord(priority: 1, weight: 50, port: 2, target: "main"),
        ]
        var spareFirst = 0
        for _ in 0..<1000 where XMPPServiceRecords.weightedOrder(records, using: &generator)[0].target == "spare" {
            spareFirst += 1
        }
        #expect(spareFirst < 60)  // only when 0 is drawn out of 0...50
        let zeros = [SRVRecord(priority: 1, weight: 0, port: 1, target: "a"), SRVRecord(priority: 1, weight: 0, port: 2, target: "b")]
        #expect(XMPPServiceRecords.weightedOrder(zeros, using: &generator).count == 2)
    }

    @Test("lower priority numbers first; Direct TLS records before STARTTLS ones of the same priority")
    func priorities() {
        var generator = SeededGenerator(seed: 1)
        let records = XMPPServiceRecords(
            directTLS: [SRVRecord(priority: 20, weight: 1, port: 5223, target: "standby"), SRVRecord(priority: 10, weight: 1, port: 5223, target: "main")],
            startTLS: [SRVRecord(priority: 10, weight: 1, port: 5222, target: "main"), SRVRecord(priority: 5, weight: 1, port: 5222, target: "first")]
        )
        let endpoints = records.endpoints(domain: "example.org", using: &generator)
        #expect(endpoints.map(\.description) == [
            "first:5222 (STARTTLS)", "main:5223 (Direct TLS)", "main:5222 (STARTTLS)", "standby:5223 (Direct TLS)",
        ])
        #expect(endpoints.allSatisfy { $0.fromSRV })
    }

    @Test("without records, the domain on 5222 with STARTTLS")
    func fallback() {
        var generator = SeededGenerator(seed: 1)
        let endpoints = XMPPServiceRecords(directTLS: [], startTLS: []).endpoints(domain: "example.org", using: &generator)
        #expect(endpoints == [XMPPEndpoint(host: "example.org", port: 5222, directTLS: false)])
        #expect(!endpoints[0].fromSRV)
    }

    @Test("a lone '.' target declines a service; declining STARTTLS leaves no fallback")
    func declined() {
        var generator = SeededGenerator(seed: 1)
        let none = SRVRecord(priority: 0, weight: 0, port: 0, target: ".")
        let onlyPlain = XMPPServiceRecords(directTLS: [none], startTLS: [SRVRecord(priority: 1, weight: 1, port: 5222, target: "x")])
        #expect(onlyPlain.endpoints(domain: "example.org", using: &generator).map(\.description) == ["x:5222 (STARTTLS)"])
        #expect(
            XMPPServiceRecords(directTLS: [none], startTLS: []).endpoints(domain: "example.org", using: &generator)
                == [XMPPEndpoint(host: "example.org", port: 5222, directTLS: false)]
        )
        #expect(XMPPServiceRecords(directTLS: [], startTLS: [none]).endpoints(domain: "example.org", using: &generator).isEmpty)
    }
}
