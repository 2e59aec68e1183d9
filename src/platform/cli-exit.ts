// A command-line failure the user can act on: printed as `<prefix>: <message>`, never a stack
// trace, and the process exits with `exitCode` (CONTRACT §1).
export class CliExit extends Error {
  constructor(readonly exitCode: number, message: string, readonly prefix = 'camnode') {
    super(message);
    this.name = 'CliExit';
  }
}
