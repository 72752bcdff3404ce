/// Something that kept a harness helper from doing its work (a URL it cannot read, a
/// command that would not start or did not finish): not a finding about the product.
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
