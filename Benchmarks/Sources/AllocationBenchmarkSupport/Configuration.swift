public import Benchmark

/// The configuration every allocation benchmark here shares: malloc calls counted, time
/// and throughput measured, figures per item (1,000 items per scaled iteration).
public func allocationBenchmarkConfiguration(
    warmupIterations: Int = 10, maxDuration: Duration = .seconds(3), maxIterations: Int = 1_000
) -> Benchmark.Configuration {
    .init(
        metrics: [.mallocCountTotal, .wallClock, .throughput],
        units: [.mallocCountTotal: .count],
        warmupIterations: warmupIterations,
        scalingFactor: .kilo,
        maxDuration: maxDuration,
        maxIterations: maxIterations
    )
}
