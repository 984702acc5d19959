#!/usr/bin/env node
// "Offline then converge" benchmark for automerge-repo + its reference sync
// server (@automerge/automerge-repo-sync-server), run side by side with
// Meridian's own benches.
//
//   node converge.mjs --peers N --edits E [--kind replies|text] [--runs R] [--timeout S]
//
// One JSON line per run on stdout; everything else on stderr. See README.md.

import { spawn, fork } from "node:child_process"
import fs from "node:fs"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import WebSocket from "ws"
import { cbor } from "@automerge/automerge-repo/slim"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SERVER_PKG = "@automerge/automerge-repo-sync-server"
const SETUP_TIMEOUT_MS = 120_000

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) console.error(`converge.mjs: ${msg}`)
  console.error(
    "usage: node converge.mjs --peers N --edits E [--kind replies|text] [--runs R] [--timeout SECONDS] [--skip-ready-probe]",
  )
  process.exit(2)
}

let opts
try {
  opts = parseArgs({
    options: {
      peers: { type: "string" },
      edits: { type: "string" },
      kind: { type: "string", default: "replies" },
      runs: { type: "string", default: "1" },
      timeout: { type: "string", default: "600" },
      "skip-ready-probe": { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }).values
} catch (err) {
  usage(err.message)
}
if (opts.help) usage()

const posInt = (v, what) => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) usage(`--${what} must be a positive integer (got ${v})`)
  return n
}
if (opts.peers === undefined) usage("--peers is required")
if (opts.edits === undefined) usage("--edits is required")
const PEERS = posInt(opts.peers, "peers")
const EDITS = posInt(opts.edits, "edits")
const RUNS = posInt(opts.runs, "runs")
const TIMEOUT_S = Number(opts.timeout)
if (!(TIMEOUT_S > 0)) usage(`--timeout must be a positive number of seconds (got ${opts.timeout})`)
const KIND = opts.kind
if (KIND !== "replies" && KIND !== "text") usage(`--kind must be replies or text (got ${KIND})`)
const READY_PROBE = !opts["skip-ready-probe"]
if (PEERS < 2) usage("--peers must be at least 2 (with one peer there is nothing to converge)")

// ----------------------------------------------------------------- versions

function pkgJson(name) {
  const file = path.join(HERE, "node_modules", ...name.split("/"), "package.json")
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    console.error(`converge.mjs: ${name} is not installed; run \`npm ci\` in ${HERE}`)
    process.exit(2)
  }
}
const serverPkg = pkgJson(SERVER_PKG)
const automergePkg = pkgJson("@automerge/automerge")
const repoPkg = pkgJson("@automerge/automerge-repo")
const serverBinRel =
  typeof serverPkg.bin === "string" ? serverPkg.bin : Object.values(serverPkg.bin ?? {})[0]
if (!serverBinRel) {
  console.error(`converge.mjs: ${SERVER_PKG} has no bin entry`)
  process.exit(2)
}
const SERVER_BIN = path.join(HERE, "node_modules", ...SERVER_PKG.split("/"), serverBinRel)

const log = (...a) => console.error("[bench]", ...a)

// ------------------------------------------------------- process bookkeeping

const children = new Set() // live child processes
const tempDirs = new Set()

function killAllSync() {
  for (const c of children) {
    try {
      c.kill("SIGKILL")
    } catch {}
  }
  for (const d of tempDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true })
    } catch {}
  }
}
process.on("exit", killAllSync)
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    console.error(`[bench] got ${sig}, cleaning up`)
    killAllSync()
    process.exit(130)
  })
}

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise(resolve => {
    const t = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(t)
      resolve(true)
    })
  })
}

async function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  if (!(await waitExit(child, graceMs))) {
    child.kill("SIGKILL")
    await waitExit(child, 5000)
  }
}

function withTimeout(promise, ms, what) {
  let t
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(t))
}

const sleep = ms => new Promise(r => setTimeout(r, ms))

function prefixLines(stream, prefix, onLine) {
  let buf = ""
  stream.setEncoding("utf8")
  stream.on("data", chunk => {
    buf += chunk
    let nl
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      process.stderr.write(`${prefix} ${line}\n`)
      onLine?.(line)
    }
  })
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

// ------------------------------------------------------------- sync server

// Starts the package's own bin, configured the way its README says: PORT and
// DATA_DIR environment variables. Resolves when it prints "Listening on port".
function startServer({ port, dataDir, cwd, fatal }) {
  const child = spawn(process.execPath, [SERVER_BIN], {
    cwd,
    env: { ...process.env, PORT: String(port), DATA_DIR: dataDir },
    stdio: ["ignore", "pipe", "pipe"],
  })
  children.add(child)
  let listening = false
  const ready = new Promise((resolve, reject) => {
    prefixLines(child.stdout, "[server]", line => {
      if (!listening && /Listening on port/.test(line)) {
        listening = true
        resolve()
      }
    })
    prefixLines(child.stderr, "[server]")
    child.on("exit", (code, signal) => {
      children.delete(child)
      const msg = `sync server exited (code ${code}, signal ${signal})`
      if (!listening) reject(new Error(`${msg} before listening`))
      else if (!child.expectedExit) fatal(new Error(`${msg} unexpectedly`))
    })
  })
  return { child, ready: withTimeout(ready, 30_000, "waiting for the sync server to listen") }
}

// The server prints "Listening" before its Repo has attached the websocket
// adapter (that waits for the storage id to be read from DATA_DIR): a client
// that connects in that window gets its upgrade answered, but its join is
// never read, and it hangs until the server's 5 s keep-alive kills it. So
// before peers are let loose we probe, directly (not through the counting
// proxy), until a join is answered with "peer". Returns the attempts needed.
async function awaitServerAnswers(port, deadlineMs = 30_000) {
  const t0 = Date.now()
  for (let attempt = 1; ; attempt++) {
    const answered = await new Promise(resolve => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`)
      const finish = ok => {
        clearTimeout(timer)
        if (ok) ws.close()
        else ws.terminate()
        resolve(ok)
      }
      const timer = setTimeout(() => finish(false), 250)
      ws.on("open", () =>
        ws.send(
          cbor.encode({
            type: "join",
            senderId: `bench-ready-probe-${process.pid}-${attempt}`,
            peerMetadata: { isEphemeral: true },
            supportedProtocolVersions: ["1"],
          }),
        ),
      )
      ws.on("message", data => {
        try {
          if (cbor.decode(new Uint8Array(data)).type === "peer") finish(true)
        } catch {}
      })
      ws.on("error", () => finish(false))
    })
    if (answered) return attempt
    if (Date.now() - t0 > deadlineMs) {
      throw new Error(`sync server on port ${port} did not answer a websocket join within ${deadlineMs / 1000} s`)
    }
    await sleep(10)
  }
}

async function serverUp(server, port) {
  await server.ready
  if (!READY_PROBE) return
  const attempts = await awaitServerAnswers(port)
  if (attempts > 1) log(`sync server answered a join only at probe attempt ${attempts} (connections before that were dropped)`)
}

async function stopServer(server) {
  server.child.expectedExit = true
  await stopChild(server.child)
}

// CPU seconds (user + system) a process has used so far; Linux only, else NaN.
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100 // USER_HZ is 100 on Linux
  } catch {
    return NaN
  }
}

// --------------------------------------------------------- counting proxy

// TCP proxy between peers and the server; counts payload bytes in both
// directions (WebSocket frames + the HTTP upgrade, not TCP/IP headers).
class CountingProxy {
  constructor(upstreamPort) {
    this.upstreamPort = upstreamPort
    this.toServer = 0
    this.toPeers = 0
    this.sockets = new Set()
    this.server = net.createServer(client => this.#onClient(client))
  }
  listen() {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject)
      this.server.listen(0, "127.0.0.1", () => resolve(this.server.address().port))
    })
  }
  #onClient(client) {
    client.setNoDelay(true)
    const upstream = net.connect({ port: this.upstreamPort, host: "127.0.0.1" })
    upstream.setNoDelay(true)
    this.sockets.add(client)
    this.sockets.add(upstream)
    client.on("data", b => {
      this.toServer += b.length
    })
    upstream.on("data", b => {
      this.toPeers += b.length
    })
    client.pipe(upstream)
    upstream.pipe(client)
    const done = () => {
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    // Propagate closes gracefully (FIN) so the peer sees an ordinary close.
    upstream.on("error", () => client.end())
    client.on("error", () => upstream.end())
    upstream.on("close", () => {
      client.end()
      done()
    })
    client.on("close", () => {
      upstream.end()
      done()
    })
  }
  reset() {
    this.toServer = 0
    this.toPeers = 0
  }
  close() {
    for (const s of this.sockets) s.destroy()
    // Don't wait on server.close()'s callback alone: it can stay pending with
    // nothing left in the event loop, which would end the process silently.
    return new Promise(resolve => {
      const t = setTimeout(resolve, 1000)
      this.server.close(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }
}

// ------------------------------------------------------------------- peers

class Peer {
  constructor(index, { dir, serverUrl, fatal }) {
    this.index = index
    this.pending = new Map()
    this.onState = null
    this.child = fork(path.join(HERE, "peer.mjs"), [], {
      cwd: dir,
      env: {
        ...process.env,
        BENCH_PEER_INDEX: String(index),
        BENCH_PEER_DIR: path.join(dir, "storage"),
        BENCH_SERVER_URL: serverUrl,
        BENCH_KIND: KIND,
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "advanced",
    })
    children.add(this.child)
    prefixLines(this.child.stdout, `[peer-${index}]`)
    this.child.stderr.pipe(process.stderr)
    this.started = new Promise((resolve, reject) => {
      this.child.on("message", msg => {
        if (msg.event === "started") resolve()
        else if (msg.event === "state") this.onState?.(msg)
        else if (msg.reply) {
          const p = this.pending.get(msg.reply)
          if (!p) return
          this.pending.delete(msg.reply)
          if (msg.error) p.reject(new Error(`peer-${index} ${msg.reply}: ${msg.error}`))
          else p.resolve(msg)
        }
      })
      this.child.on("exit", (code, signal) => {
        children.delete(this.child)
        const err = new Error(`peer-${index} exited (code ${code}, signal ${signal})`)
        reject(err)
        for (const p of this.pending.values()) p.reject(err)
        this.pending.clear()
        if (!this.child.expectedExit) fatal(err)
      })
    })
  }
  request(cmd, args = {}, timeoutMs = SETUP_TIMEOUT_MS) {
    const p = new Promise((resolve, reject) => {
      this.pending.set(cmd, { resolve, reject })
      this.child.send({ cmd, ...args })
    })
    return withTimeout(p, timeoutMs, `waiting for peer-${this.index} to ${cmd}`)
  }
  async stop() {
    this.child.expectedExit = true
    await stopChild(this.child, 2000)
  }
}

// --------------------------------------------------------------------- run

async function listFiles(dir) {
  try {
    const entries = await fs.promises.readdir(dir, { withFileTypes: true, recursive: true })
    return entries.filter(e => e.isFile())
  } catch {
    return []
  }
}

async function runOnce(runNo) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "meridian-amrepo-bench-"))
  tempDirs.add(root)
  const serverDir = path.join(root, "server")
  const dataDir = path.join(serverDir, "data")
  fs.mkdirSync(serverDir)

  // Any child dying unexpectedly aborts the run through this promise.
  let fatal
  const fatalP = new Promise((_, reject) => {
    fatal = reject
  })
  fatalP.catch(() => {})
  const guard = p => Promise.race([p, fatalP])

  let server = null
  let proxy = null
  const peers = []
  try {
    const port = await freePort()
    log(`run ${runNo}: sync server ${SERVER_PKG}@${serverPkg.version} on 127.0.0.1:${port}, data ${dataDir}`)
    server = startServer({ port, dataDir, cwd: serverDir, fatal })
    await guard(serverUp(server, port))

    proxy = new CountingProxy(port)
    const proxyPort = await proxy.listen()
    const serverUrl = `ws://127.0.0.1:${proxyPort}`

    // --- peers come up and get the document through the server
    for (let i = 0; i < PEERS; i++) {
      const dir = path.join(root, `peer-${i}`)
      fs.mkdirSync(dir)
      peers.push(new Peer(i, { dir, serverUrl, fatal }))
    }
    await guard(withTimeout(Promise.all(peers.map(p => p.started)), SETUP_TIMEOUT_MS, "starting peers"))

    const created = await guard(
      peers[0].request("create", { title: "Offline-then-converge benchmark thread" }),
    )
    const docUrl = created.url
    const documentId = docUrl.replace(/^automerge:/, "")
    log(`peer-0 created ${docUrl}; server has it`)
    await guard(Promise.all(peers.slice(1).map(p => p.request("find", { url: docUrl }))))
    log(`all ${PEERS} peers have the document`)

    // Make sure the server persisted the document before we stop it.
    const docDir = path.join(dataDir, documentId.slice(0, 2), documentId.slice(2))
    const t0Persist = Date.now()
    while ((await listFiles(docDir)).length === 0) {
      if (Date.now() - t0Persist > 30_000) throw new Error(`server never wrote ${docDir}`)
      await sleep(20)
    }
    await sleep(500) // let its throttled (100 ms) doc / sync-state saves finish

    // --- the server goes down while people work
    await guard(Promise.all(peers.map(p => p.request("holdReconnect"))))
    await stopServer(server)
    server = null
    await guard(Promise.all(peers.map(p => p.request("awaitOffline"))))
    log("server stopped; all peers offline")

    const edited = await guard(
      Promise.all(peers.map(p => p.request("edit", { edits: EDITS }, Math.max(TIMEOUT_S * 1000, 600_000)))),
    )
    for (const [i, r] of edited.entries()) {
      if (r.count !== EDITS) throw new Error(`peer-${i} has ${r.count} edits after editing, expected ${EDITS}`)
    }
    const maxEditMs = Math.max(...edited.map(r => r.editMs))
    log(`offline: each peer made ${EDITS} ${KIND} edits (slowest peer ${maxEditMs.toFixed(0)} ms)`)

    // --- converge: restart the server (same port, same data dir), then all
    // peers connect at once; the clock runs until every peer has every edit
    // and all peers' heads are equal.
    server = startServer({ port, dataDir, cwd: serverDir, fatal })
    await guard(serverUp(server, port))

    const target = PEERS * EDITS
    const states = new Array(PEERS).fill(null)
    let t0 = 0
    let cpu0 = null
    let result = null
    let resolveConverged
    const converged = new Promise(r => {
      resolveConverged = r
    })
    const check = () => {
      if (result) return
      for (const s of states) if (!s || s.count !== target) return
      const h0 = states[0].heads
      for (const s of states) if (s.heads !== h0) return
      const t1 = performance.now()
      result = {
        seconds: (t1 - t0) / 1000,
        bytes: proxy.toServer + proxy.toPeers,
        up: proxy.toServer,
        down: proxy.toPeers,
        serverCpu: cpuSeconds(server.child.pid) - cpu0.server,
        peerCpu: peers.map((p, i) => cpuSeconds(p.child.pid) - cpu0.peers[i]),
      }
      resolveConverged(result)
    }
    peers.forEach((p, i) => {
      p.onState = s => {
        states[i] = { count: s.count, heads: [...s.heads].sort().join(","), reports: s.reports, reportMs: s.reportMs }
        check()
      }
    })

    cpu0 = { server: cpuSeconds(server.child.pid), peers: peers.map(p => cpuSeconds(p.child.pid)) }
    proxy.reset()
    t0 = performance.now()
    for (const p of peers) p.child.send({ cmd: "connect" })
    const progress = setInterval(() => {
      const counts = states.map(s => (s ? s.count : "?")).join(" ")
      log(`converging ${((performance.now() - t0) / 1000).toFixed(1)} s; counts: ${counts} / ${target}`)
    }, 10_000)
    try {
      await guard(
        withTimeout(converged, TIMEOUT_S * 1000, `waiting for ${PEERS} peers to converge on ${target} edits`).catch(
          err => {
            const counts = states.map(s => (s ? s.count : "?")).join(" ")
            throw new Error(`${err.message} (per-peer counts: ${counts})`)
          },
        ),
      )
    } finally {
      clearInterval(progress)
    }
    log(
      `converged in ${result.seconds.toFixed(3)} s; ${result.bytes} bytes on the wire ` +
        `(${result.up} peers->server, ${result.down} server->peers)`,
    )
    const peerCpu = result.peerCpu.reduce((a, b) => a + b, 0)
    log(
      `CPU during converge: server ${result.serverCpu.toFixed(2)} s, peers ${peerCpu.toFixed(2)} s in all ` +
        `(busiest ${Math.max(...result.peerCpu).toFixed(2)} s); load average ${os.loadavg()[0].toFixed(2)}`,
    )
    log(
      `harness overhead in peers: up to ${Math.max(...states.map(s => s.reports))} state reports, ` +
        `${Math.max(...states.map(s => s.reportMs)).toFixed(1)} ms per peer at most`,
    )
    return result
  } finally {
    for (const p of peers) p.onState = null
    await Promise.all(peers.map(p => p.stop()))
    if (server) await stopServer(server)
    if (proxy) await proxy.close()
    fs.rmSync(root, { recursive: true, force: true })
    tempDirs.delete(root)
  }
}

async function main() {
  log(
    `peers=${PEERS} edits=${EDITS} kind=${KIND} runs=${RUNS} timeout=${TIMEOUT_S}s; ` +
      `server ${SERVER_PKG}@${serverPkg.version}, automerge-repo ${repoPkg.version}, ` +
      `automerge ${automergePkg.version}, node ${process.version}`,
  )
  for (let r = 1; r <= RUNS; r++) {
    const res = await runOnce(r)
    process.stdout.write(
      JSON.stringify({
        peers: PEERS,
        edits: EDITS,
        kind: KIND,
        seconds: Number(res.seconds.toFixed(3)),
        bytes: res.bytes,
        server: `${SERVER_PKG}@${serverPkg.version}`,
        automerge: automergePkg.version,
      }) + "\n",
    )
  }
}

let finished = false
process.on("beforeExit", () => {
  if (!finished) {
    console.error("converge.mjs: FAILED: internal error: the event loop drained before the benchmark finished")
    process.exit(1)
  }
})

main().then(
  () => {
    finished = true
    process.exit(0)
  },
  err => {
    console.error(`converge.mjs: FAILED: ${err && err.message ? err.message : err}`)
    killAllSync()
    process.exit(1)
  },
)
