import Foundation

/// Finds scripts on disk for the runner and for `conclave user add-from-scripts`.
/// (The only part of `Scansion` that touches the file system.)
public enum ScansionFiles {
    public struct MissingFile: Error, CustomStringConvertible {
        public var path: String
        public var description: String { "no such file: \(path)" }
    }

    /// Each path as given; a directory stands for its `*.scs` files, sorted (not recursive).
    public static func expand(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw MissingFile(path: path)
            }
            guard isDirectory.boolValue else {
                files.append(path)
                continue
            }
            let entries = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".scs") }
            files += entries.sorted().map { path.hasSuffix("/") ? path + $0 : path + "/" + $0 }
        }
        return files
    }

    /// Reads and parses one script.
    public static func load(_ path: String) throws -> ScansionScript {
        try ScansionScript(parsing: try String(contentsOfFile: path, encoding: .utf8), path: path)
    }
}
