import XMPPCore

/// The IQs the server answers itself (addressed to the domain, to the user's own bare
/// JID, or to nobody): XEP-0199 ping, XEP-0030 disco, XEP-0092 version, and the
/// (empty) roster. Everything else is `service-unavailable`.
struct ServerIQHandler: Sendable {
    let domain: JID
    let mucDomain: JID
    let softwareVersion: String

    static let features = [
        Namespace.discoInfo, Namespace.discoItems, Namespace.ping, Namespace.version, Namespace.roster,
        // Offline messages (XEP-0160).
        "msgoffline",
    ]

    func handle(_ iq: XMLElement, to: JID?, from: JID) -> XMLElement {
        guard let payload = iq.elements.first else {
            return iq.errorReply(StanzaError(.badRequest))
        }
        let toServer = to == nil || to == domain
        switch (iq.type, payload.namespace, payload.name) {
        case ("get", Namespace.ping, "ping"):
            return iq.iqResult()
        case ("get", Namespace.discoInfo, "query") where payload[attribute: "node"] == nil:
            return iq.iqResult(toServer ? serverInfo : accountInfo)
        case ("get", Namespace.discoItems, "query") where payload[attribute: "node"] == nil:
            var items = XMLElement("query", namespace: Namespace.discoItems)
            if toServer {
                items.append(
                    XMLElement(
                        "item",
                        namespace: Namespace.discoItems,
                        ["jid": mucDomain.description, "name": "Chatrooms"]
                    )
                )
            }
            return iq.iqResult(items)
        case ("get", Namespace.version, "query") where toServer:
            return iq.iqResult(
                XMLElement(
                    "query",
                    namespace: Namespace.version,
                    children: [
                        XMLElement("name", namespace: Namespace.version, text: "Conclave"),
                        XMLElement("version", namespace: Namespace.version, text: softwareVersion),
                    ]
                )
            )
        case ("get", Namespace.roster, "query") where to == nil || to == from.bare:
            return iq.iqResult(XMLElement("query", namespace: Namespace.roster))
        default:
            return iq.errorReply(StanzaError(.serviceUnavailable))
        }
    }

    private var serverInfo: XMLElement {
        var query = XMLElement("query", namespace: Namespace.discoInfo)
        query.append(
            XMLElement("identity", namespace: Namespace.discoInfo, ["category": "server", "type": "im", "name": "Conclave"])
        )
        for feature in Self.features {
            query.append(XMLElement("feature", namespace: Namespace.discoInfo, ["var": feature]))
        }
        return query
    }

    private var accountInfo: XMLElement {
        var query = XMLElement("query", namespace: Namespace.discoInfo)
        query.append(XMLElement("identity", namespace: Namespace.discoInfo, ["category": "account", "type": "registered"]))
        query.append(XMLElement("feature", namespace: Namespace.discoInfo, ["var": Namespace.discoInfo]))
        return query
    }
}
