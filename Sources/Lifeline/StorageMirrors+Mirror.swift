import LifelineCore
import LifelineStorage

/// The protocol's mirror sets (`StorageMirrors`, in LifelineCore) and the storage layer's
/// mirrors (`Mirror`) name the same two roots.
extension StorageMirrors {
    /// The set holding `mirrors`.
    init(_ mirrors: [Mirror]) {
        self = []
        for mirror in mirrors { insert(mirror == .a ? .a : .b) }
    }

    /// Its mirrors, A first.
    var mirrors: [Mirror] { Mirror.allCases.filter { contains($0 == .a ? .a : .b) } }

    /// `ab`, `a`, `b` (or empty), as the launch environment spells the set.
    var letters: String { mirrors.map(\.rawValue).joined() }

    /// The set `letters` spells; nil for anything but `ab`, `a` or `b`.
    init?(letters: String) {
        guard ["ab", "a", "b"].contains(letters) else { return nil }
        self.init(letters.compactMap { Mirror(rawValue: String($0)) })
    }
}
