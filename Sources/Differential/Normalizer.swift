public import XMPPCore

/// Turns a received stanza into the form two servers' answers are compared in, and
/// that a `.scs` reproduction expects: the clients' addresses become `${A's JID}` /
/// `${A's full JID}` (resources differ between servers), values a server makes up
/// (ids it generates, timestamps) become `{scansion:any}`, attributes are sorted,
/// layout whitespace goes. What may legitimately differ beyond that is a `Tolerance`:
/// each is named, and docs/muc.md lists them with the reason.
public struct Normalizer: Sendable {
    /// Each client's name with the full JID it bound.
    public var clients: [(name: String, full: JID)]
    /// The ids the scenario's stanzas carry: an answer echoing one is compared as is.
    public var sentIDs: Set<String>
    public var tolerances: [Tolerance]

    public init(clients: [(name: String, full: JID)], sentIDs: Set<String>, tolerances: [Tolerance] = Tolerance.all) {
        self.clients = clients
        self.sentIDs = sentIDs
        self.tolerances = tolerances
    }

    public static let any = "{scansion:any}"

    /// The stanza as compared and as a reproduction expects it.
    public func normalize(_ stanza: XMLElement) -> XMLElement {
        var copy = stanza
        for tolerance in tolerances { tolerance.apply(&copy) }
        copy = normalizeTree(copy)
        if let id = copy[attribute: "id"], !sentIDs.contains(id) { copy[attribute: "id"] = Self.any }
        return copy
    }

    /// The canonical text of a normalised stanza.
    public func canonical(_ stanza: XMLElement) -> String { normalize(stanza).serialized() }

    func normalizeTree(_ element: XMLElement) -> XMLElement {
        var copy = element
        copy.attributes = element.attributes
            .filter { $0.name != "xmlns" && !$0.name.hasPrefix("xmlns:") }
            .map { XMLAttribute(name: $0.name, value: address($0.value), namespace: $0.namespace) }
            .sorted { $0.name < $1.name }
        if element.name == "delay", element.namespace == "urn:xmpp:delay", copy[attribute: "stamp"] != nil {
            copy[attribute: "stamp"] = Self.any
        }
        // Each server derives occupant ids from its own secret: present, any value.
        if element.name == "occupant-id", element.namespace == "urn:xmpp:occupant-id:0", copy[attribute: "id"] != nil {
            copy[attribute: "id"] = Self.any
        }
        copy.children = element.children.compactMap { child -> XMLNode? in
            switch child {
            case .element(let inner): return .element(normalizeTree(inner))
            case .text(let text):
                return text.allSatisfy(\.isWhitespace) && element.children.count > 1 ? nil : .text(addresses(in: text))
            }
        }
        return copy
    }

    /// Text with the clients' full addresses (an invitation's body names the inviter)
    /// written as variables, as in attributes.
    func addresses(in text: String) -> String {
        guard text.contains("@") else { return text }
        var result = text
        for (name, full) in clients { result = result.replacing(full.description, with: "${\(name)'s full JID}") }
        return result
    }

    /// A client's address as a scansion variable; anything else unchanged.
    func address(_ value: String) -> String {
        guard value.contains("@"), let jid = try? JID(value) else { return value }
        for (name, full) in clients {
            if jid == full { return "${\(name)'s full JID}" }
            if jid.isBare, jid == full.bare { return "${\(name)'s JID}" }
        }
        return value
    }
}

/// A difference between servers that is accepted, with the reason. docs/muc.md lists
/// each by its tag.
public struct Tolerance: Sendable {
    public var tag: String
    public var reason: String
    let transform: @Sendable (inout XMLElement) -> Void

    public init(tag: String, reason: String, transform: @escaping @Sendable (inout XMLElement) -> Void) {
        self.tag = tag
        self.reason = reason
        self.transform = transform
    }

    public func apply(_ element: inout XMLElement) { transform(&element) }

    /// Rewrites the data form (XEP-0004) of an iq's `query` in `namespace` with `rewrite`.
    static func rewritingForm(inQuery namespace: String, _ rewrite: @escaping @Sendable (inout XMLElement) -> Void)
        -> @Sendable (inout XMLElement) -> Void
    {
        { iq in
            guard iq.name == "iq", var query = iq.child("query", namespace: namespace), var form = query.child("x", namespace: "jabber:x:data")
            else { return }
            rewrite(&form)
            query.replaceChild("x", namespace: "jabber:x:data", with: form)
            iq.replaceChild("query", namespace: namespace, with: query)
        }
    }

    /// Removes, anywhere in the tree, the children `drop` selects.
    static func removing(_ drop: @escaping @Sendable (XMLElement, XMLElement) -> Bool) -> @Sendable (inout XMLElement) -> Void {
        @Sendable func walk(_ element: inout XMLElement) {
            let parent = element
            element.children = element.children.compactMap { child -> XMLNode? in
                guard case .element(var inner) = child else { return child }
                if drop(parent, inner) { return nil }
                walk(&inner)
                return .element(inner)
            }
        }
        return { walk(&$0) }
    }

    public static let all: [Tolerance] = [
        Tolerance(
            tag: "invite-order",
            reason: "Prosody adds an invitation's <body/> and <x xmlns='jabber:x:conference'/> in an order that changes from one of its runs to the next; both are compared, body first",
            transform: { message in
                guard message.name == "message",
                    message.child("x", namespace: "http://jabber.org/protocol/muc#user")?.child("invite", namespace: "http://jabber.org/protocol/muc#user") != nil,
                    let conference = message.children.firstIndex(where: {
                        if case .element(let child) = $0 { return child.name == "x" && child.namespace == "jabber:x:conference" }
                        return false
                    })
                else { return }
                let moved = message.children.remove(at: conference)
                message.children.append(moved)
            }
        ),
        Tolerance(
            tag: "disco-order",
            reason: "the order of a disco#info answer's identities and features carries no meaning (XEP-0030), and Prosody's follows its hooks; they are compared sorted",
            transform: { iq in
                guard let index = iq.children.firstIndex(where: {
                    if case .element(let child) = $0 { return child.name == "query" && child.namespace == "http://jabber.org/protocol/disco#info" }
                    return false
                }), case .element(var query) = iq.children[index] else { return }
                func key(_ node: XMLNode) -> String {
                    guard case .element(let element) = node else { return "~" }
                    switch element.name {
                    case "identity": return "0" + element.serialized()
                    case "feature": return "1" + (element[attribute: "var"] ?? "")
                    default: return "2"
                    }
                }
                let sortable = query.children.filter { key($0) < "2" }.sorted { key($0) < key($1) }
                let rest = query.children.filter { key($0) >= "2" }
                query.children = sortable + rest
                iq.children[index] = .element(query)
            }
        ),
        Tolerance(
            tag: "disco-features",
            reason: "a room also advertises disco#info, disco#items (XEP-0030 §3.2: every entity does) and urn:xmpp:sid:0 (its messages carry stanza ids); Prosody 0.12's rooms do not",
            transform: removing { parent, child in
                parent.name == "query" && parent.namespace == "http://jabber.org/protocol/disco#info" && child.name == "feature"
                    && ["http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "urn:xmpp:sid:0"].contains(child[attribute: "var"] ?? "")
            }
        ),
        Tolerance(
            tag: "join-error-x",
            reason: "Conclave's error answer to a join carries the join's <x xmlns='http://jabber.org/protocol/muc'/>, as XEP-0045's examples show (§7.2.5–7.2.10); Prosody 0.12's does not",
            transform: { presence in
                guard presence.name == "presence", presence[attribute: "type"] == "error" else { return }
                presence.children.removeAll {
                    if case .element(let child) = $0 { return child.name == "x" && child.namespace == "http://jabber.org/protocol/muc" }
                    return false
                }
            }
        ),
        Tolerance(
            tag: "stanza-id",
            reason: "Conclave stamps room messages with XEP-0359 stanza ids (its history is an archive); Prosody 0.12 does only with mod_muc_mam",
            transform: removing { _, child in child.name == "stanza-id" && child.namespace == "urn:xmpp:sid:0" }
        ),
        Tolerance(
            tag: "roominfo-fields",
            reason: "a room's disco#info form also carries the XEP-0045 fields muc#roominfo_subject, muc#roomconfig_allowpm and muc#maxhistoryfetch, which Prosody 0.12 leaves out; a boolean field without a value is false (XEP-0004 §3.3), as Prosody sends an option never set; the fields are compared sorted (Prosody's order changes from run to run)",
            transform: rewritingForm(inQuery: "http://jabber.org/protocol/disco#info") { form in
                let extra: Set<String> = ["muc#roominfo_subject", "muc#roomconfig_allowpm", "muc#maxhistoryfetch"]
                form.children = form.children.compactMap { node -> XMLNode? in
                    guard case .element(var field) = node, field.name == "field" else { return node }
                    if extra.contains(field[attribute: "var"] ?? "") { return nil }
                    if field[attribute: "type"] == "boolean", field.child("value", namespace: "jabber:x:data") == nil {
                        field.append(XMLElement("value", namespace: "jabber:x:data", text: "0"))
                    }
                    return .element(field)
                }
                // Prosody's field order follows its hooks and changes from run to run.
                let sorted = form.elements.filter { $0.name == "field" }.sorted { ($0[attribute: "var"] ?? "") < ($1[attribute: "var"] ?? "") }
                form.children = form.children.filter {
                    if case .element(let element) = $0 { return element.name != "field" }
                    return false
                } + sorted.map { .element($0) }
            }
        ),
        Tolerance(
            tag: "config-form",
            reason: "a configuration form's presentation (title, instructions, section headings, labels, help texts, validation hints, the options' wording, field order) is each server's own; each field's name, type and current values are compared. Fields Prosody 0.12 lacks (passwordprotectedroom, allowpm, maxusers, getmemberlist, enablelogging) are left out, and Prosody's {http://prosody.im/protocol/muc}roomconfig_allowmemberinvites is compared as muc#roomconfig_allowinvites, the same option. A boolean without a value is false, an empty text value is no value",
            transform: rewritingForm(inQuery: "http://jabber.org/protocol/muc#owner") { form in
                let conclaveOnly: Set<String> = [
                    "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_allowpm", "muc#roomconfig_maxusers",
                    "muc#roomconfig_getmemberlist", "muc#roomconfig_enablelogging",
                ]
                var fields: [XMLElement] = []
                for field in form.children("field", namespace: "jabber:x:data") {
                    guard var name = field[attribute: "var"], field[attribute: "type"] != "fixed", !conclaveOnly.contains(name) else { continue }
                    if name == "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites" { name = "muc#roomconfig_allowinvites" }
                    var values = field.children("value", namespace: "jabber:x:data").map { $0.text.trimmingWhitespace() }.filter { !$0.isEmpty }
                    if field[attribute: "type"] == "boolean", values.isEmpty { values = ["0"] }
                    if field[attribute: "type"] == "list-multi" { values.sort() }
                    var copy = XMLElement("field", namespace: "jabber:x:data", ["var": name])
                    if let type = field[attribute: "type"] { copy[attribute: "type"] = type }
                    for value in values { copy.append(XMLElement("value", namespace: "jabber:x:data", text: value)) }
                    fields.append(copy)
                }
                fields.sort { ($0[attribute: "var"] ?? "") < ($1[attribute: "var"] ?? "") }
                form.children = fields.map { .element($0) }
            }
        ),
        Tolerance(
            tag: "config-change-order",
            reason: "the status codes of a configuration change notice (104, 170–173) are a set; Prosody sends them in an order that changes from run to run; they are compared sorted",
            transform: { message in
                guard message.name == "message", message[attribute: "type"] == "groupchat", message.child("body") == nil,
                    var x = message.child("x", namespace: "http://jabber.org/protocol/muc#user"),
                    x.elements.allSatisfy({ $0.name == "status" })
                else { return }
                x.children = x.elements.sorted { ($0[attribute: "code"] ?? "") < ($1[attribute: "code"] ?? "") }.map { .element($0) }
                message.replaceChild("x", namespace: "http://jabber.org/protocol/muc#user", with: x)
            }
        ),
        Tolerance(
            tag: "admin-list",
            reason: "an affiliation or role list (muc#admin) is a set: Prosody sends it in its table order, which changes from run to run, so items are compared sorted; and Conclave gives each affiliation's <reason> (XEP-0045 §9.2, example 109), which Prosody 0.12 does not keep",
            transform: { iq in
                guard iq.name == "iq", iq[attribute: "type"] == "result", var query = iq.child("query", namespace: "http://jabber.org/protocol/muc#admin")
                else { return }
                let items = query.children("item", namespace: "http://jabber.org/protocol/muc#admin").map { item -> XMLElement in
                    var copy = item
                    copy.children.removeAll {
                        if case .element(let child) = $0 { return child.name == "reason" }
                        return false
                    }
                    return copy
                }
                // By nick, then bare JID: full JIDs carry each server's own resources.
                func key(_ item: XMLElement) -> String {
                    (item[attribute: "nick"] ?? "") + "|" + String((item[attribute: "jid"] ?? "").prefix { $0 != "/" })
                }
                query.children = items.sorted { key($0) < key($1) }.map { .element($0) }
                iq.replaceChild("query", namespace: "http://jabber.org/protocol/muc#admin", with: query)
            }
        ),
        Tolerance(
            tag: "attribute-whitespace",
            reason: "Prosody writes a tab in an attribute (a nick that is refused, echoed in `from`) as a raw tab, which XML parsers read as a space (XML 1.0 §3.3.3); Conclave escapes it and it stays a tab. Tabs and line ends in attribute values are compared as spaces",
            transform: { element in
                @Sendable func walk(_ element: inout XMLElement) {
                    for index in element.attributes.indices where element.attributes[index].value.contains(where: { $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
                        element.attributes[index].value = String(element.attributes[index].value.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
                    }
                    element.children = element.children.map { node in
                        guard case .element(var inner) = node else { return node }
                        walk(&inner)
                        return .element(inner)
                    }
                }
                walk(&element)
            }
        ),
        Tolerance(
            tag: "error-text",
            reason: "an error's human-readable <text> is worded by each server; the condition and type are compared",
            transform: removing { parent, child in
                parent.name == "error" && child.name == "text" && child.namespace == "urn:ietf:params:xml:ns:xmpp-stanzas"
            }
        ),
    ]
}

extension XMLElement {
    /// Puts `element` in place of the first child named `name` in `namespace`.
    mutating func replaceChild(_ name: String, namespace: String, with element: XMLElement) {
        guard let index = children.firstIndex(where: {
            if case .element(let child) = $0 { return child.name == name && child.namespace == namespace }
            return false
        }) else { return }
        children[index] = .element(element)
    }
}
