internal import CLibXML2
public import XMPPCore

/// What the stream parser found in the bytes it was fed, in document order.
public enum XMLStreamEvent: Sendable, Hashable {
    /// The stream header (`<stream:stream …>`): its name, namespace and attributes, and
    /// the default namespace it declares (`jabber:client` for c2s).
    case streamOpen(header: XMLElement, defaultNamespace: String?)
    /// A complete depth-1 element: a stanza or a negotiation element.
    case element(XMLElement)
    /// The closing `</stream:stream>`.
    case streamClose
}

/// Why the parser gave up. Each maps onto one stream error condition of RFC 6120 §4.9.
public struct XMLStreamParserError: Error, Sendable, Hashable, CustomStringConvertible {
    public var condition: StreamError.Condition
    public var detail: String

    public init(_ condition: StreamError.Condition, _ detail: String) {
        self.condition = condition
        self.detail = detail
    }

    public var streamError: StreamError { StreamError(condition, text: detail) }
    public var description: String { "\(condition.rawValue): \(detail)" }
}

/// An incremental XMPP stream parser on libxml2's SAX2 push interface.
///
/// Feed it bytes as they arrive, split anywhere; it returns the events completed by
/// those bytes. Restricted XML (RFC 6120 §11.1: DTDs, comments, processing
/// instructions, entity declarations) is refused with `restricted-xml`, anything
/// not well-formed with `not-well-formed`, and a stanza over `maxStanzaBytes` or
/// nested deeper than `maxDepth` with `policy-violation`. Errors are final: after
/// one, the parser must be reset before it accepts anything again.
///
/// Not thread-safe: one parser belongs to one connection on one event loop.
public final class XMLStreamParser {
    public struct Options: Sendable {
        /// Largest stanza, in bytes of its serialised form as received.
        public var maxStanzaBytes: Int = 256 * 1024
        /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
        public var maxDepth: Int = 64
        /// Report namespace declarations below the stream header as attributes
        /// (`xmlns`, `xmlns:prefix`). Servers leave this off; the spec runner needs
        /// to know where an expected element declared its namespace.
        public var reportsNamespaceDeclarations = false
        /// Most elements in one stanza (the stanza itself included). Tiny elements cost far
        /// more memory parsed than sent, so their number is bounded, not only their bytes.
        public var maxElementsPerStanza = 10_000
        /// Most attributes (namespace declarations included) on one element. libxml2
        /// checks them for duplicates in time quadratic in their number, before any
        /// callback could refuse them, so they are counted in the raw bytes first.
        public var maxAttributesPerElement = 64
        /// Largest stream header (everything before the end of `<stream:stream …>`).
        public var maxHeaderBytes = 8 * 1024
        /// Names and namespace URIs (estimated bytes) libxml2 may collect in its
        /// dictionary before the parser starts a fresh context between two stanzas.
        public var maxDictionaryBytes = 1024 * 1024
        public init() {}
    }

    public let options: Options

    private var context: xmlParserCtxtPtr?
    private var stack: [XMLElement] = []
    private var events: [XMLStreamEvent] = []
    private var failure: XMLStreamParserError?
    private var streamOpen = false
    private var fedBytes = 0
    private var boundaryOffset = 0
    private var stanzaStart = 0
    private var stanzaElements = 0
    /// Text of the innermost open element, gathered in place: libxml2 reports text in
    /// pieces (one per character reference), and joining strings piece by piece would
    /// copy the text once per piece.
    private var pendingText: [UInt8] = []
    /// Names and namespace URIs as Swift strings, by the address libxml2's dictionary
    /// gives them, so that a long URI shared by many elements is stored once.
    private var interned: [UnsafeRawPointer: String] = [:]
    private var internedBytes = 0
    private static let maxInternedBytes = 64 * 1024
    private var scanner = MarkupScanner()
    private var sniffedEncoding = false
    private var leadingBytes: [UInt8] = []
    /// The bytes up to the end of the stream header, kept to start a fresh libxml2
    /// context in the middle of the stream (see `renewContextIfNeeded`).
    private var headerBytes: [UInt8] = []
    /// Bytes of names and namespace URIs libxml2 has probably added to its dictionary,
    /// which lives as long as its context: a stream of ever new names would otherwise
    /// grow it without bound.
    private var dictionaryBytes = 0
    private var replayingHeader = false
    /// How many times the libxml2 context was renewed mid-stream.
    public private(set) var contextRenewals = 0

    /// libxml2 is fed pieces of at most this size, so an oversized stanza is
    /// refused after at most this many bytes beyond the limit have been buffered.
    private static let sliceSize = 4096

    public init(options: Options = Options()) {
        self.options = options
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
    }

    /// Forgets everything and waits for a new stream header (a stream restart after
    /// STARTTLS or SASL, RFC 6120 §4.3.3).
    public func reset() {
        if let context { xmlFreeParserCtxt(context) }
        context = nil
        hibernating = false
        stack.removeAll(keepingCapacity: true)
        pendingText.removeAll()
        interned.removeAll()
        internedBytes = 0
        scanner = MarkupScanner()
        sniffedEncoding = false
        leadingBytes = []
        headerBytes = []
        dictionaryBytes = 0
        stanzaElements = 0
        failure = nil
        streamOpen = false
        fedBytes = 0
        boundaryOffset = 0
        stanzaStart = 0
    }

    public func parse(_ string: String) throws(XMLStreamParserError) -> [XMLStreamEvent] {
        try parse(Array(string.utf8))
    }

    public func parse(_ bytes: [UInt8]) throws(XMLStreamParserError) -> [XMLStreamEvent] {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(XMLStreamParserError) in try parse(buffer) }
        }
        return try result.get()
    }

    /// Parses `bytes` and returns the events they complete.
    public func parse(_ bytes: UnsafeRawBufferPointer) throws(XMLStreamParserError) -> [XMLStreamEvent] {
        if let failure { throw failure }
        events.removeAll(keepingCapacity: true)
        // Whitespace alone (a keep-alive) does not wake a released parser.
        if hibernating {
            guard !bytes.allSatisfy(Self.isBlank) else { return events }
            hibernating = false
            replayHeader()
            if let failure { throw failure }
        }
        var offset = 0
        while offset < bytes.count {
            let length = min(Self.sliceSize, bytes.count - offset)
            let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
            try parseSlice(slice)
            offset += length
        }
        renewContextIfNeeded()
        return events
    }

    /// Between stanzas, once libxml2's dictionary has taken in more than
    /// `maxDictionaryBytes`, the context is replaced by a fresh one that is fed the
    /// stream header again (its events are not reported): memory stays bounded on a
    /// stream that lasts for days and keeps sending new names.
    private func renewContextIfNeeded() {
        guard dictionaryBytes > options.maxDictionaryBytes, betweenStanzas else { return }
        dropContext()
        replayHeader()
        if failure == nil { contextRenewals += 1 }
    }

    /// An open stream with nothing of a stanza fed: libxml2's context can go and a fresh
    /// one take over after the stream header alone.
    /// libxml2 keeps whitespace after a stanza (a keep-alive, a newline) unconsumed until
    /// more input comes; with no element open, that is all it may keep here.
    private var betweenStanzas: Bool {
        guard failure == nil, streamOpen, stack.isEmpty, let context, !headerBytes.isEmpty else { return false }
        return Int(xmlByteConsumed(context)) >= fedBytes - trailingBlanks
    }

    /// Whitespace bytes at the end of what was fed.
    private var trailingBlanks = 0

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// Whether the context is released (`hibernate`) until the next input.
    public private(set) var hibernating = false

    /// Releases libxml2's context (about 15 KiB) and the names interned for it while the
    /// stream is idle between stanzas; the next input first replays the stream header to
    /// a fresh context, without reporting it. `false` (and nothing released) in the middle
    /// of a stanza, before the stream opened, or after a failure.
    @discardableResult
    public func hibernate() -> Bool {
        guard !hibernating else { return true }
        guard betweenStanzas else { return false }
        dropContext()
        events = []
        pendingText = []
        hibernating = true
        return true
    }

    private func dropContext() {
        if let context { xmlFreeParserCtxt(context) }
        context = nil
        interned = [:]
        internedBytes = 0
        dictionaryBytes = 0
        fedBytes = 0
        trailingBlanks = 0
        boundaryOffset = 0
        streamOpen = false
        stack = []
    }

    /// Feeds the stream header to a fresh context; its events are not reported.
    private func replayHeader() {
        replayingHeader = true
        let header = headerBytes
        _ = header.withUnsafeBytes { bytes in
            Result { () throws(XMLStreamParserError) in try parseSlice(bytes, scanning: false) }
        }
        replayingHeader = false
    }

    private func parseSlice(_ slice: UnsafeRawBufferPointer, scanning: Bool = true) throws(XMLStreamParserError) {
        if !streamOpen, !replayingHeader, headerBytes.count <= options.maxHeaderBytes {
            headerBytes.append(contentsOf: slice.prefix(options.maxHeaderBytes + 1 - headerBytes.count))
        }
        if !sniffedEncoding {
            // UTF-16 and UTF-32 give themselves away in the first two bytes (a byte order
            // mark, or a NUL byte next to '<'); RFC 6120 §11.6 allows UTF-8 only.
            for byte in slice where leadingBytes.count < 2 { leadingBytes.append(byte) }
            if leadingBytes.count == 2 || (leadingBytes.count == 1 && leadingBytes[0] != 0x3C) {
                sniffedEncoding = true
                let first = leadingBytes[0]
                let second = leadingBytes.count > 1 ? leadingBytes[1] : 0x3C
                if first == 0xFE || first == 0xFF || first == 0x00 || (first == 0x3C && second == 0x00) {
                    fail(.unsupportedEncoding, "only UTF-8 is allowed")
                    throw failure!
                }
            }
        }
        if scanning, let problem = scanner.scan(slice, maxAttributes: options.maxAttributesPerElement) {
            fail(.policyViolation, problem)
            throw failure!
        }
        let context = makeContextIfNeeded()
        let status = slice.withMemoryRebound(to: CChar.self) { chars in
            xmlParseChunk(context, chars.baseAddress, Int32(chars.count), 0)
        }
        if let failure { throw failure }
        if status == 0, context.pointee.nsWellFormed == 0 {
            // An undeclared prefix, or a namespace name libxml2 does not take as a URI.
            let message = xmlCtxtGetLastError(context).flatMap { $0.pointee.message }.map { String(cString: $0) }
            fail(.notWellFormed, message.map { trimmed($0) } ?? "namespace error")
            throw failure!
        }
        if status != 0 {
            let message = xmlCtxtGetLastError(context).flatMap { $0.pointee.message }.map { String(cString: $0) }
            fail(.notWellFormed, message.map { trimmed($0) } ?? "XML error \(status)")
            throw failure!
        }
        fedBytes += slice.count
        if slice.allSatisfy(Self.isBlank) {
            trailingBlanks += slice.count
        } else {
            trailingBlanks = slice.reversed().prefix(while: Self.isBlank).count
        }
        // Bytes since the last boundary: before a header (the first, or one after the
        // stream closed) they are the header's.
        if !streamOpen, fedBytes - boundaryOffset > options.maxHeaderBytes {
            fail(.policyViolation, "stream header larger than \(options.maxHeaderBytes) bytes")
            throw failure!
        }
        if fedBytes - boundaryOffset > options.maxStanzaBytes {
            fail(.policyViolation, "stanza larger than \(options.maxStanzaBytes) bytes")
            throw failure!
        }
    }

    private func markBoundary() {
        if let context { boundaryOffset = Int(xmlByteConsumed(context)) }
    }

    private func trimmed(_ message: String) -> String {
        var result = message
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return result
    }

    private func makeContextIfNeeded() -> xmlParserCtxtPtr {
        if let context { return context }
        var handler = xmlSAXHandler()
        handler.initialized = XML_SAX2_MAGIC
        handler.startElementNs = startElementCallback
        handler.endElementNs = endElementCallback
        handler.characters = charactersCallback
        handler.cdataBlock = charactersCallback
        handler.ignorableWhitespace = charactersCallback
        handler.internalSubset = internalSubsetCallback
        handler.externalSubset = internalSubsetCallback
        handler.entityDecl = entityDeclCallback
        handler.notationDecl = notationDeclCallback
        handler.unparsedEntityDecl = unparsedEntityDeclCallback
        handler.elementDecl = elementDeclCallback
        handler.attributeDecl = attributeDeclCallback
        handler.processingInstruction = processingInstructionCallback
        handler.comment = commentCallback
        handler.getEntity = getEntityCallback
        handler.serror = structuredErrorCallback
        let userData = Unmanaged.passUnretained(self).toOpaque()
        let context = xmlCreatePushParserCtxt(&handler, userData, nil, 0, nil)!
        // Never substitute entities, never load anything, no huge-document mode.
        _ = xmlCtxtUseOptions(context, Int32(XML_PARSE_NONET.rawValue))
        self.context = context
        return context
    }

    fileprivate func fail(_ condition: StreamError.Condition, _ detail: String) {
        guard failure == nil else { return }
        failure = XMLStreamParserError(condition, detail)
        if let context { xmlStopParser(context) }
    }

    // MARK: - SAX events

    fileprivate func startElement(
        localname: UnsafePointer<xmlChar>?,
        uri: UnsafePointer<xmlChar>?,
        namespaceCount: Int,
        namespaces: UnsafeMutablePointer<UnsafePointer<xmlChar>?>?,
        attributeCount: Int,
        attributes: UnsafeMutablePointer<UnsafePointer<xmlChar>?>?
    ) {
        guard failure == nil else { return }
        if streamOpen {
            if stack.isEmpty { stanzaElements = 0 }
            stanzaElements += 1
            if stanzaElements > options.maxElementsPerStanza {
                fail(.policyViolation, "more than \(options.maxElementsPerStanza) elements in a stanza")
                return
            }
            flushText()
        }
        var element = XMLElement(name: intern(localname), namespace: uri.map { intern($0) } ?? "")
        if attributeCount > 0, let attributes {
            element.attributes.reserveCapacity(attributeCount)
            for index in 0..<attributeCount {
                let base = index * 5
                var name = intern(attributes[base])
                var namespace = ""
                if let prefix = attributes[base + 1] {
                    let prefixText = intern(prefix)
                    name = prefixText + ":" + name
                    // The `xml` prefix is bound by definition; any other prefix needs its
                    // URI, or the attribute could not be written out again correctly.
                    if prefixText != "xml" { namespace = attributes[base + 2].map { intern($0) } ?? "" }
                }
                var value: String
                if let start = attributes[base + 3], let end = attributes[base + 4] {
                    value = String(
                        decoding: UnsafeBufferPointer(start: start, count: end - start),
                        as: UTF8.self
                    )
                    // Without entity substitution (which stays off), libxml2 hands an
                    // escaped '&' in an attribute over as the text "&#38;". A literal
                    // "&#38;" can only stand for '&' there, since a bare '&' is not XML.
                    if value.utf8.contains(UInt8(ascii: "&")) {
                        value = value.replacing("&#38;", with: "&")
                    }
                } else {
                    value = ""
                }
                element.attributes.append(XMLAttribute(name: name, value: value, namespace: namespace))
            }
        }
        if !streamOpen {
            if let encoding = context?.pointee.encoding {
                let name = String(cString: encoding).uppercased()
                if name != "UTF-8" && name != "UTF8" {
                    fail(.unsupportedEncoding, "only UTF-8 is allowed, not \(name)")
                    return
                }
            }
            var defaultNamespace: String?
            if namespaceCount > 0, let namespaces {
                for index in 0..<namespaceCount where namespaces[index * 2] == nil {
                    defaultNamespace = namespaces[index * 2 + 1].map { intern($0) } ?? ""
                }
            }
            streamOpen = true
            markBoundary()
            // libxml2 reports a start tag before consuming its closing '>'.
            boundaryOffset += 1
            if boundaryOffset > options.maxHeaderBytes {
                fail(.policyViolation, "stream header larger than \(options.maxHeaderBytes) bytes")
                return
            }
            if replayingHeader { return }
            headerBytes.removeSubrange(min(boundaryOffset, headerBytes.count)...)
            events.append(.streamOpen(header: element, defaultNamespace: defaultNamespace))
            return
        }
        if stack.count >= options.maxDepth {
            fail(.policyViolation, "elements nested deeper than \(options.maxDepth)")
            return
        }
        if options.reportsNamespaceDeclarations, namespaceCount > 0, let namespaces {
            for index in 0..<namespaceCount {
                let prefix = namespaces[index * 2].map { intern($0) }
                let uri = namespaces[index * 2 + 1].map { intern($0) } ?? ""
                element.attributes.append(XMLAttribute(name: prefix.map { "xmlns:" + $0 } ?? "xmlns", value: uri))
            }
        }
        if stack.isEmpty { stanzaStart = boundaryOffset }
        stack.append(element)
    }

    fileprivate func endElement() {
        guard failure == nil else { return }
        flushText()
        guard let element = stack.popLast() else {
            streamOpen = false
            markBoundary()
            events.append(.streamClose)
            return
        }
        if stack.isEmpty {
            markBoundary()
            if boundaryOffset - stanzaStart > options.maxStanzaBytes {
                fail(.policyViolation, "stanza larger than \(options.maxStanzaBytes) bytes")
                return
            }
            trimInterned()
            events.append(.element(element))
        } else {
            stack[stack.count - 1].children.append(.element(element))
        }
    }

    fileprivate func characters(_ bytes: UnsafePointer<xmlChar>?, _ length: Int) {
        guard failure == nil, let bytes, length > 0 else { return }
        guard !stack.isEmpty else {
            // Text between stanzas: whitespace keep-alives (RFC 6120 §4.6.1).
            markBoundary()
            return
        }
        pendingText.append(contentsOf: UnsafeBufferPointer(start: bytes, count: length))
    }

    /// Moves the gathered text into the innermost open element.
    private func flushText() {
        guard !pendingText.isEmpty else { return }
        defer { pendingText.removeAll(keepingCapacity: pendingText.capacity <= 4096) }
        guard !stack.isEmpty else { return }
        let text = String(decoding: pendingText, as: UTF8.self)
        let top = stack.count - 1
        if case .text(let previous)? = stack[top].children.last {
            stack[top].children[stack[top].children.count - 1] = .text(previous + text)
        } else {
            stack[top].children.append(.text(text))
        }
    }

    /// The string at `pointer`, which libxml2 keeps in its dictionary (names, prefixes
    /// and namespace URIs): one Swift copy per distinct string while the stream lasts,
    /// up to a byte budget; past it, strings are shared within a stanza only.
    private func intern(_ pointer: UnsafePointer<xmlChar>?) -> String {
        guard let pointer else { return "" }
        let key = UnsafeRawPointer(pointer)
        if let known = interned[key] { return known }
        var string = String(cString: pointer)
        // Namespace URIs are attribute values to libxml2: without entity substitution it
        // hands an escaped '&' over as "&#38;" (see the attribute values above). Left so,
        // the URI changed, and written again ("&amp;#38;") it became an invalid URI that
        // made the next parser (a node link's, a room's history) fail.
        if string.utf8.contains(UInt8(ascii: "&")) { string = string.replacing("&#38;", with: "&") }
        interned[key] = string
        internedBytes += string.utf8.count
        dictionaryBytes += string.utf8.count
        return string
    }

    /// Called at the end of each stanza: forgets the interned strings once they exceed
    /// their budget (a stanza's worth of strings never outlives the next stanza).
    private func trimInterned() {
        if internedBytes > Self.maxInternedBytes {
            interned.removeAll()
            internedBytes = 0
        }
    }
}

// MARK: - C callbacks

private func parser(_ context: UnsafeMutableRawPointer?) -> XMLStreamParser {
    Unmanaged<XMLStreamParser>.fromOpaque(context!).takeUnretainedValue()
}

private let startElementCallback: startElementNsSAX2Func = {
    context, localname, _, uri, namespaceCount, namespaces, attributeCount, _, attributes in
    parser(context).startElement(
        localname: localname,
        uri: uri,
        namespaceCount: Int(namespaceCount),
        namespaces: namespaces,
        attributeCount: Int(attributeCount),
        attributes: attributes
    )
}

private let endElementCallback: endElementNsSAX2Func = { context, _, _, _ in
    parser(context).endElement()
}

private let charactersCallback: charactersSAXFunc = { context, bytes, length in
    parser(context).characters(bytes, Int(length))
}

private let internalSubsetCallback: internalSubsetSAXFunc = { context, _, _, _ in
    parser(context).fail(.restrictedXML, "document type declarations are not allowed")
}

private let entityDeclCallback: entityDeclSAXFunc = { context, _, _, _, _, _ in
    parser(context).fail(.restrictedXML, "entity declarations are not allowed")
}

private let notationDeclCallback: notationDeclSAXFunc = { context, _, _, _ in
    parser(context).fail(.restrictedXML, "notation declarations are not allowed")
}

private let unparsedEntityDeclCallback: unparsedEntityDeclSAXFunc = { context, _, _, _, _ in
    parser(context).fail(.restrictedXML, "entity declarations are not allowed")
}

private let elementDeclCallback: elementDeclSAXFunc = { context, _, _, _ in
    parser(context).fail(.restrictedXML, "element declarations are not allowed")
}

private let attributeDeclCallback: attributeDeclSAXFunc = { context, _, _, _, _, _, _ in
    parser(context).fail(.restrictedXML, "attribute declarations are not allowed")
}

private let processingInstructionCallback: processingInstructionSAXFunc = { context, _, _ in
    parser(context).fail(.restrictedXML, "processing instructions are not allowed")
}

private let commentCallback: commentSAXFunc = { context, _ in
    parser(context).fail(.restrictedXML, "comments are not allowed")
}

/// Only the five predefined entities exist in XMPP.
private let getEntityCallback: getEntitySAXFunc = { _, name in
    xmlGetPredefinedEntity(name)
}

/// libxml2 reports through here as well as through the return code; the return code
/// decides, so this only keeps libxml2 from printing to stderr.
private let structuredErrorCallback: xmlStructuredErrorFunc = { _, _ in }
