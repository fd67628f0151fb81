/**
 * Shared flags and the one place errors become messages and exit codes.
 * Commands stay thin: parse, call one library function, print the result.
 */
import {Command, Flags, type Interfaces} from '#oclif'
import {setMaxListeners} from 'node:events'
import os from 'node:os'
import {addAbortSignal} from 'node:stream'
import {ExitCode, InterruptedError, VmiError} from '../errors.js'
import {LocalStore} from '../store/local-store.js'
import type {ProgressReporter} from '../progress.js'
import {hintFor} from './hints.js'
import {jsonLine, versioned} from './json.js'
import {stderrProgress} from './progress-bar.js'
import {resolveStoreDir} from './settings.js'

/**
 * Signals that stop a command. SIGHUP is among them: a hypervisor started by
 * `mount --exec` runs in a session of its own, so a closed terminal no longer
 * reaches it directly.
 */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + (os.constants.signals[sig] ?? ExitCode.INTERRUPTED - 128)
}

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * oclif fills an omitted optional positional argument from standard input
 * whenever stdin is not a TTY (a pipe, a `while read` loop, a CI step), which
 * turned `cat disk | vmi import -` and `… | vmi pull web:1` into garbage
 * names. vmi reads stdin only where the user wrote `-`: every argument of
 * every command is parsed with oclif's `ignoreStdin`.
 */
function withoutStdin(args: Interfaces.ArgInput | undefined): Interfaces.ArgInput {
  return Object.fromEntries(Object.entries(args ?? {}).map(([name, arg]) => [name, {...arg, ignoreStdin: true}]))
}

export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    store: Flags.string({
      summary: 'Store directory (default $VMI_HOME, else $XDG_DATA_HOME/vmi, else ~/.local/share/vmi).',
      helpGroup: 'GLOBAL',
    }),
    quiet: Flags.boolean({char: 'q', summary: 'No progress output.', helpGroup: 'GLOBAL', default: false}),
  }

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  /** All positional arguments, in order (for variadic commands). */
  protected positional: string[] = []
  protected readonly abort = new AbortController()
  /** The first of SIGINT, SIGTERM, SIGHUP received. */
  private stopSignal?: NodeJS.Signals

  /**
   * Whether run() stops on `this.signal` (winding down what it started).
   * Any other command ends at once on a signal: its writes are atomic
   * renames and its locks go with the process.
   */
  static interruptible = false

  /**
   * Whether a signal is this command's normal end (a mount runs until
   * stopped): an error after it is then reported as itself, not as the
   * interruption (a last flush that failed at unmount is not the signal's).
   */
  static stopsOnSignal = false

  public override async init(): Promise<void> {
    // every in-flight request listens on this signal
    setMaxListeners(0, this.abort.signal)
    // the first signal asks run() to stop; a second one (or any, for a command that is not interruptible) ends the process at once
    const onSignal = (sig: NodeJS.Signals) => {
      const again = this.stopSignal !== undefined
      this.stopSignal ??= sig
      if (again || !(this.ctor as typeof BaseCommand).interruptible) {
        // a progress bar hides the cursor until it stops
        if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\n')
        this.report(new InterruptedError(`${this.commandName()} interrupted by ${this.stopSignal}`))
        process.exit(this.interruptedExitCode())
      }
      this.abort.abort(new InterruptedError(`interrupted by ${sig}`))
    }
    for (const sig of STOP_SIGNALS) process.on(sig, onSignal)
    await super.init()
    const {args, flags, argv} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: withoutStdin(this.ctor.args),
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    this.positional = argv as string[]
  }

  /** The exit code for having been stopped by a signal: 128 + its number (SIGINT 130, SIGTERM 143, SIGHUP 129). */
  private interruptedExitCode(): number {
    return signalExitCode(this.stopSignal ?? 'SIGINT')
  }

  protected get signal(): AbortSignal {
    return this.abort.signal
  }

  /** Standard input (for a `-` argument), destroyed on a signal: a writer that sends nothing more must not hold the command. */
  protected stdin(): NodeJS.ReadStream {
    return addAbortSignal(this.signal, process.stdin)
  }

  protected storeDir(): string {
    return resolveStoreDir(this.flags.store, process.env, os.homedir())
  }

  protected async openStore(opts: {create?: boolean} = {}): Promise<LocalStore> {
    return LocalStore.open(this.storeDir(), opts)
  }

  /** Progress on stderr: a bar on a TTY, else a line every 5 s ($VMI_PROGRESS_INTERVAL_MS); none with -q or --json. */
  protected progress(): ProgressReporter {
    const ms = Number(process.env.VMI_PROGRESS_INTERVAL_MS)
    return stderrProgress(!this.flags.quiet && !this.jsonEnabled(), Number.isInteger(ms) && ms > 0 ? ms : undefined)
  }

  /** One line on stderr (suppressed by --quiet and --json). */
  protected note(message: string): void {
    if (!this.flags?.quiet && !this.jsonEnabled()) process.stderr.write(message + '\n')
  }

  /**
   * A warning on stderr: `warning: …`, or with --json one JSON line
   * `{"version": 1, "warning": {message, …data}}` (a script still hears of it);
   * suppressed by --quiet.
   */
  protected warning(message: string, data: object = {}): void {
    if (this.flags?.quiet) return
    process.stderr.write(this.jsonEnabled() ? jsonLine({warning: {...data, message}}) : `warning: ${message}\n`)
  }

  /** The result on stdout with --json, with its shape's version (docs/JSON.md). */
  protected override toSuccessJson(result: unknown): unknown {
    return versioned(result as object)
  }

  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    const code = this.report(err)
    if (code !== ExitCode.OK) process.exitCode = code
    return undefined
  }

  /** Print the error (stderr; JSON with --json) and return its exit code. */
  private report(err: Interfaces.CommandError): number {
    let code: number
    let payload: Record<string, unknown>
    if (this.stopSignal && (err instanceof InterruptedError || !(this.ctor as typeof BaseCommand).stopsOnSignal)) {
      // whatever failed after a signal failed because of it (an aborted request is not the remote's fault)
      code = this.interruptedExitCode()
      const message = err instanceof InterruptedError ? err.message : `${this.commandName()} interrupted by ${this.stopSignal}`
      payload = {code: 'VMI_INTERRUPTED', message, exitCode: code}
    } else if (err instanceof VmiError) {
      code = err.exitCode
      const hint = err.hint ?? hintFor(err)
      payload = {code: err.code, message: err.message, exitCode: code, ...(hint ? {hint} : {}), ...(Object.keys(err.data).length ? {data: err.data} : {})}
    } else if (typeof (err as {oclif?: {exit?: number}}).oclif?.exit === 'number') {
      // oclif's own errors: bad flags, missing arguments, this.exit()
      code = (err as unknown as {oclif: {exit: number}}).oclif.exit
      if (code === 0) return code
      if (code === 1 || code === 2) code = ExitCode.USAGE
      // oclif adds to a missing argument a note that repeatable flags take every value after them; vmi's
      // take one value per use (multipleNonGreedy), so the note would mislead
      payload = {code: 'VMI_USAGE', message: err.message.replace(/\n\nNote: [^\n]* multiple values\.[^\n]*(\nAlternatively, [^\n]*)?/, ''), exitCode: code}
    } else {
      code = ExitCode.FAILURE
      payload = {code: 'VMI_INTERNAL', message: err.message ?? String(err), exitCode: code}
      if (process.env.VMI_DEBUG) process.stderr.write(`${err.stack}\n`)
    }
    if (this.jsonEnabled()) process.stderr.write(jsonLine({error: payload}))
    else process.stderr.write(`vmi: error: ${payload.message}\n${payload.hint ? `vmi: hint: ${payload.hint}\n` : ''}`)
    return code
  }

  private commandName(): string {
    return (this.id ?? 'vmi').replaceAll(':', ' ')
  }
}
