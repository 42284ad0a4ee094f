/// An error a Lifeline program or launcher can act on. New codes may be added; match on the
/// ones you handle and fall back to `description`.
public struct LifelineError: Error, Sendable, CustomStringConvertible {
    /// What kind of problem it is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The program used the API in a way it does not allow (a bad rank, a reserved tag…).
        public static let usage = Code("usage")
        /// The process was not started by `lifeline run`, or its environment is incomplete.
        public static let environment = Code("environment")
        /// A saved state or snapshot does not decode.
        public static let corruptState = Code("corruptState")
        /// A socket or connection failed.
        public static let transport = Code("transport")
        /// Stable storage failed (a disk error, both mirrors damaged…).
        public static let storage = Code("storage")
        /// The job configuration is invalid.
        public static let configuration = Code("configuration")
        /// The job could not finish.
        public static let jobFailed = Code("jobFailed")
    }

    /// What kind of problem it is.
    public let code: Code
    /// One line saying what is wrong and what to do.
    public let message: String

    /// An error of kind `code` with a message for the user.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
