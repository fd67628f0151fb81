import {Args} from '#oclif'
import {BaseCommand} from '../cli/base-command.js'
import {readAllowedSigners, resolveAllowedSignersFile, verifySignersFlag} from '../cli/signing.js'
import {UsageError} from '../errors.js'
import {verifyLocalRef, type VerifiedSignature} from '../store/ref-signature.js'

export default class Verify extends BaseCommand<typeof Verify> {
  static override summary = "Check a local ref's signature against an allowed signers file."
  static override description = `A ref is signed by 'vmi push --sign' (and the signature stored beside the local ref by that push, by a pull that verified it, or by 'vmi load' of a bundle that carries it). The signature must name this ref and the image it points at now, verify, and be made by a key the allowed signers file (git's allowed_signers format; principals are patterns matched against NAME:TAG) allows for this name.

Exit codes: 0 good signature, 2 no allowed signers file given, or a malformed one (named by file:line), 3 no such ref, or the file does not exist, 10 the signature is missing, malformed, for another ref or image, does not verify, or is by a key not allowed for this name.`
  static override examples = [
    '<%= config.bin %> verify web:v2 --verify-signers /etc/vmi/allowed_signers',
    'VMI_ALLOWED_SIGNERS=/etc/vmi/allowed_signers <%= config.bin %> verify web:v2 --json',
  ]
  static override args = {
    ref: Args.string({description: 'NAME[:TAG] of a local ref.', required: true}),
  }
  static override flags = {...verifySignersFlag}

  async run(): Promise<VerifiedSignature> {
    const store = await this.openStore()
    const file = resolveAllowedSignersFile(this.flags['verify-signers'], process.env, await store.readConfig())
    if (file === undefined) throw new UsageError('no allowed signers file: give --verify-signers FILE, set $VMI_ALLOWED_SIGNERS, or vmi config set allowedSigners FILE')
    const r = await verifyLocalRef(store, this.args.ref, await readAllowedSigners(file))
    this.log(`good signature of ${r.ref} -> ${r.id} by ${r.keyType} key ${r.key}, signed ${r.time} (allowed by ${r.allowedBy}: ${r.principals})`)
    return r
  }
}
