import XMPPCore

/// One page of a XEP-0059 result set (the service's room list): a client asks for at
/// most `max` items after the last one it has; the service never answers more than its
/// own bound (`muc_limits.disco_items_max`), whatever is asked, so one request cannot
/// make it list every room at once.
struct ResultSetPage: Equatable {
    static let namespace = "http://jabber.org/protocol/rsm"

    /// Items to answer at most.
    var max: Int
    /// The last item the client has (its JID), if it asks for the next page.
    var after: String?

    /// The page `query` asks for, bounded by `limit`; without `<set/>`, the first `limit`
    /// items. `before` and `index` are not supported (the first page is answered).
    init(query: XMLElement?, limit: Int) {
        let set = query?.child("set", namespace: Self.namespace)
        let asked = set?.child("max", namespace: Self.namespace).flatMap { Int($0.text) }
        max = Swift.max(0, Swift.min(asked ?? limit, limit))
        let after = set?.child("after", namespace: Self.namespace)?.text
        self.after = after?.isEmpty == false ? after : nil
    }

    /// The `<set/>` that ends the answer: the first and last item given, and how many there
    /// are in all (XEP-0059 §2.1); `nil` when the request had no `<set/>` and everything fit.
    static func answer(query: XMLElement?, first: String?, last: String?, count: Int, given: Int) -> XMLElement? {
        guard query?.child("set", namespace: namespace) != nil || given < count else { return nil }
        var set = XMLElement("set", namespace: namespace)
        if let first, let last {
            set.append(XMLElement("first", namespace: namespace, text: first))
            set.append(XMLElement("last", namespace: namespace, text: last))
        }
        set.append(XMLElement("count", namespace: namespace, text: String(count)))
        return set
    }
}
