/// A XEP-0004 data form, as MUC configuration and room info use it.
public struct DataForm: Sendable, Hashable {
    public struct Field: Sendable, Hashable {
        public var variable: String
        public var type: String?
        public var label: String?
        public var values: [String]
        public var options: [(label: String?, value: String)]
        /// A longer explanation (`<desc/>`).
        public var description: String?
        /// The submitter must give a value (`<required/>`).
        public var required: Bool

        public init(
            _ variable: String, type: String? = nil, label: String? = nil, values: [String] = [],
            options: [(label: String?, value: String)] = [], description: String? = nil, required: Bool = false
        ) {
            self.variable = variable
            self.type = type
            self.label = label
            self.values = values
            self.options = options
            self.description = description
            self.required = required
        }

        public var value: String? { values.first }

        /// The value as a boolean (`1`/`true`), `nil` when absent or not boolean.
        public var bool: Bool? {
            switch values.first {
            case "1", "true": true
            case "0", "false": false
            default: nil
            }
        }

        public static func == (lhs: Field, rhs: Field) -> Bool {
            lhs.variable == rhs.variable && lhs.type == rhs.type && lhs.label == rhs.label && lhs.values == rhs.values
                && lhs.options.map(\.value) == rhs.options.map(\.value) && lhs.description == rhs.description
                && lhs.required == rhs.required
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(variable)
            hasher.combine(values)
        }
    }

    /// `form`, `submit`, `cancel` or `result`.
    public var type: String
    public var title: String?
    public var instructions: String?
    public var fields: [Field]

    public init(type: String, title: String? = nil, instructions: String? = nil, fields: [Field] = []) {
        self.type = type
        self.title = title
        self.instructions = instructions
        self.fields = fields
    }

    public subscript(_ variable: String) -> Field? {
        fields.first { $0.variable == variable }
    }

    /// The `FORM_TYPE` hidden field's value.
    public var formType: String? { self["FORM_TYPE"]?.value }

    public init?(element: XMLElement) {
        guard element.name == "x", element.namespace == Namespace.dataForms else { return nil }
        type = element[attribute: "type"] ?? "form"
        title = element.child("title", namespace: Namespace.dataForms)?.text
        instructions = element.child("instructions", namespace: Namespace.dataForms)?.text
        fields = element.children("field", namespace: Namespace.dataForms).compactMap { field in
            guard let variable = field[attribute: "var"] else { return nil }
            return Field(
                variable,
                type: field[attribute: "type"],
                label: field[attribute: "label"],
                values: field.children("value", namespace: Namespace.dataForms).map(\.text),
                description: field.child("desc", namespace: Namespace.dataForms)?.text,
                required: field.child("required", namespace: Namespace.dataForms) != nil
            )
        }
    }

    public var element: XMLElement {
        var x = XMLElement("x", namespace: Namespace.dataForms, ["type": type])
        if let title { x.append(XMLElement("title", namespace: Namespace.dataForms, text: title)) }
        if let instructions { x.append(XMLElement("instructions", namespace: Namespace.dataForms, text: instructions)) }
        for field in fields {
            var node = XMLElement("field", namespace: Namespace.dataForms, ["var": field.variable])
            if let type = field.type { node[attribute: "type"] = type }
            if let label = field.label { node[attribute: "label"] = label }
            // XEP-0004's order, as Prosody writes it too: desc, options, values, required.
            if let description = field.description {
                node.append(XMLElement("desc", namespace: Namespace.dataForms, text: description))
            }
            for option in field.options {
                var element = XMLElement("option", namespace: Namespace.dataForms)
                if let label = option.label { element[attribute: "label"] = label }
                element.append(XMLElement("value", namespace: Namespace.dataForms, text: option.value))
                node.append(element)
            }
            for value in field.values { node.append(XMLElement("value", namespace: Namespace.dataForms, text: value)) }
            if field.required { node.append(XMLElement("required", namespace: Namespace.dataForms)) }
            x.append(node)
        }
        return x
    }
}
