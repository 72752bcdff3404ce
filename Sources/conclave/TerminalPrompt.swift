import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reads a line from the terminal on standard input with echo turned off. The terminal's
/// settings are put back afterwards, also when reading fails or the user presses Ctrl-C.
enum TerminalPrompt {
    /// The settings to restore from the signal handler (set only while a prompt is shown).
    nonisolated(unsafe) private static var saved: termios?

    static func readSecret(_ prompt: String) throws -> String {
        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else {
            throw CommandError("cannot read the terminal's settings: \(String(cString: strerror(errno)))")
        }
        var quiet = original
        quiet.c_lflag &= ~tcflag_t(ECHO)
        // The Enter key's newline is still shown, so the next prompt starts on a new line.
        quiet.c_lflag |= tcflag_t(ECHONL)
        saved = original
        let previousInterrupt = signal(SIGINT, restoreAndExit)
        let previousTerminate = signal(SIGTERM, restoreAndExit)
        defer {
            var restore = original
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &restore)
            saved = nil
            signal(SIGINT, previousInterrupt)
            signal(SIGTERM, previousTerminate)
        }
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0 else {
            throw CommandError("cannot turn off the terminal's echo: \(String(cString: strerror(errno)))")
        }
        // Echo is off before the prompt appears: whatever is typed after it stays hidden.
        FileHandle.standardError.write(Data(prompt.utf8))
        guard let line = readLine(strippingNewline: true) else {
            FileHandle.standardError.write(Data("\n".utf8))
            throw CommandError("no password entered")
        }
        return line
    }

    /// Puts the terminal back and dies of the signal as if no handler had been installed.
    private static let restoreAndExit: @convention(c) (Int32) -> Void = { signalNumber in
        if var terminal = TerminalPrompt.saved { _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &terminal) }
        signal(signalNumber, SIG_DFL)
        raise(signalNumber)
    }
}
