import ArgumentParser
import Foundation
import Lifeline

/// The `lifeline` command: supervise SPMD jobs through crashes.
struct LifelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeline",
        abstract: "Run SPMD programs with checkpoints and recovery from crashes.",
        version: "0.1.0",
        subcommands: [Run.self, Resume.self, Replay.self, Inspect.self, TimelineCommand.self, Storage.self, RecoveryLineCommand.self,
                      Simulate.self])
}

/// Options shared by `run` and `resume`.
struct InjectionOptions: ParsableArguments {
    @Option(name: .customLong("inject"), help: ArgumentHelp(
        "Inject a fault (repeatable): kill:rank=R,after=DURATION | kill:rank=R,step=S | kill:rank=R,epoch=E | kill:rank=R,phase=checkpoint|recovery|finish | hang:rank=R,after=DURATION | kill:supervisor,epoch=E|after=DURATION | chaos:seed=N,mtbf=DURATION | corrupt:mirror=a|b,epoch=E|after=DURATION[,file=chunk|index|manifest|log] | fail:mirror=a|b,epoch=E|after=DURATION[,for=DURATION] | lose:memory,epoch=E|after=DURATION",
        valueName: "SPEC"))
    var injections: [String] = []
}

// Run directories, storage roots, checkpoints, logs and output are the user's alone (0700
// folders, 0600 files): ranks inherit the mask.
umask(0o077)
do {
    var command = try LifelineCommand.parseAsRoot()
    try command.run()
} catch let error as LifelineError {
    note("error: \(error.message)")
    exit(exitStatus(error.code))
} catch {
    LifelineCommand.exit(withError: error)
}

/// The exit status of a run that ended with `code`: 1 the job could not finish (a program error
/// on every attempt, restarts exhausted, a deadlock, nondeterminism, a lost environment); 2 it was
/// refused before it changed anything (a bad configuration, a run directory or storage in use, a
/// job.json that does not fit its job); 3 stable storage failed or is lost.
func exitStatus(_ code: LifelineError.Code) -> Int32 {
    switch code {
    case .configuration, .usage: return 2
    case .storage, .corruptState: return 3
    default: return 1
    }
}
