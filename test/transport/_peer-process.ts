/**
 * A GrpcTransport in a child process, for tests that need a peer the OS can freeze (SIGSTOP):
 * prints its address on stdout, stops on SIGTERM. Usage: node _peer-process.js <id> [listen].
 */
import { GrpcTransport } from "../../src/transport/index.js";
import { Recorder } from "./_util.js";

const [id = "peer", listen = "127.0.0.1:0"] = process.argv.slice(2);
const t = new GrpcTransport({ self: id, listen, stopGraceMs: 200 });
await t.start(new Recorder());
process.stdout.write(`${t.address()}\n`);
process.on("SIGTERM", () => {
  void t.stop().then(() => process.exit(0));
});
