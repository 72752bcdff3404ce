import Synchronization
import Testing
import XMPPCore

/// A queue's depth between its marks: high from the high mark until it falls to the low
/// one, and whoever waits for relief goes on exactly then.
struct PressureGaugeTests {
    @Test func itIsHighFromTheHighMarkUntilTheLowMark() {
        let gauge = PressureGauge(high: 100, low: 40)
        gauge.add(99)
        #expect(!gauge.isHigh)
        gauge.add(1)
        #expect(gauge.isHigh && gauge.timesHigh == 1)
        gauge.add(-50)
        #expect(gauge.isHigh, "between the marks it stays high")
        gauge.add(-10)
        #expect(!gauge.isHigh && gauge.level == 40)
        gauge.add(30)
        #expect(!gauge.isHigh, "between the marks it stays as it was")
        #expect(gauge.peak == 100)
    }

    @Test func waitersGoOnWhenTheDepthFallsToTheLowMarkAndNotBefore() async {
        let gauge = PressureGauge(high: 10, low: 5)
        let told = Atomic<Int>(0)
        gauge.whenRelieved { told.add(1, ordering: .relaxed) }
        #expect(told.load(ordering: .relaxed) == 1, "not high: at once")
        gauge.add(10)
        gauge.whenRelieved { told.add(1, ordering: .relaxed) }
        gauge.whenRelieved { told.add(1, ordering: .relaxed) }
        gauge.add(-4)
        #expect(told.load(ordering: .relaxed) == 1)
        gauge.add(-1)
        #expect(told.load(ordering: .relaxed) == 3, "both waiters, once each")
        gauge.add(10)
        gauge.add(-10)
        #expect(told.load(ordering: .relaxed) == 3)
    }

    @Test func aWaiterThatGaveUpIsForgottenAndNotCalled() {
        let gauge = PressureGauge(high: 10, low: 5)
        gauge.add(10)
        let told = Atomic<Int>(0)
        let token = gauge.whenRelieved { told.add(1, ordering: .relaxed) }
        gauge.whenRelieved { told.add(10, ordering: .relaxed) }
        #expect(gauge.waiting == 2)
        gauge.cancel(try! #require(token))
        #expect(gauge.waiting == 1, "nothing piles up while the queue stays high")
        gauge.add(-10)
        #expect(told.load(ordering: .relaxed) == 10)
    }
}
