// One benchmark peer ("one laptop per person"): its own Node process, its own
// automerge-repo Repo with NodeFS storage in its own directory, and one
// websocket client adapter pointed at the sync server (through the parent's
// byte-counting proxy). Driven by the parent (converge.mjs) over IPC.
//
// Messages from the parent: {cmd, ...}; every command is answered with
// {reply: cmd, ...} (or {reply: cmd, error}). While converging the peer also
// pushes {event: "state", count, heads} on every change of its document.

import { randomBytes } from "node:crypto"
import { Repo } from "@automerge/automerge-repo"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { next as A } from "@automerge/automerge"

const index = Number(process.env.BENCH_PEER_INDEX)
const name = `peer-${index}`
const dir = process.env.BENCH_PEER_DIR
const url = process.env.BENCH_SERVER_URL
const kind = process.env.BENCH_KIND
// How often the adapter retries a failed connection once told to connect.
// The server is already listening when we are told, so this should not fire.
const RETRY_MS = 1000

if (!process.send) {
  console.error("peer.mjs is started by converge.mjs (needs an IPC channel)")
  process.exit(2)
}
// If the parent goes away, so do we.
process.on("disconnect", () => process.exit(1))

const adapter = new BrowserWebSocketClientAdapter(url, RETRY_MS)
const repo = new Repo({
  storage: new NodeFSStorageAdapter(dir),
  network: [adapter],
  peerId: `${name}-${process.pid}`,
  // default policy of a client: share generously
  sharePolicy: async () => true,
})

let handle = null
let reporting = false

const count = doc => {
  if (!doc) return -1
  if (kind === "text") return typeof doc.body === "string" ? doc.body.length : -1
  return doc.comments ? Object.keys(doc.comments).length : -1
}

// Harness overhead inside the peer (counting + heads + IPC), reported so the
// parent can show it is small next to the converge time.
let reports = 0
let reportMs = 0

function report() {
  const t = performance.now()
  const doc = handle.docSync()
  const state = { event: "state", count: count(doc), heads: A.getHeads(doc), reports: ++reports, reportMs }
  process.send(state)
  reportMs += performance.now() - t
}

function attach(h) {
  handle = h
  // Event-driven convergence detection: every time the doc's heads move
  // (local change or incoming sync message), tell the parent where we are.
  handle.on("heads-changed", () => {
    if (reporting) report()
  })
}

const WORDS = (
  "looks good to me, one nit on the naming; can we ship this after the " +
  "review? agreed, let's sync on it tomorrow morning before standup. " +
  "I pushed a fix for the flaky test and updated the docs accordingly."
).split(" ")

function replyText() {
  // ~60 characters of plausible reply text
  let s = ""
  let i = Math.floor(Math.random() * WORDS.length)
  while (s.length < 60) {
    s += (s ? " " : "") + WORDS[i % WORDS.length]
    i++
  }
  return s.slice(0, 60)
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz      .,"

async function waitFor(pred, what, timeoutMs = 60_000, stepMs = 10) {
  const t0 = Date.now()
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, stepMs))
  }
}

const handlers = {
  // Peer 0: create the thread document and wait until the sync server has it.
  async create({ title }) {
    const initial = { kind: "thread", title, comments: {} }
    if (kind === "text") initial.body = ""
    const h = repo.create(initial)
    attach(h)
    await h.whenReady()
    const heads = A.getHeads(h.docSync())
    // The server advertises a storageId; once its heads (as learned through
    // the sync protocol) equal ours, the server holds the document.
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("server did not acknowledge the new document within 60 s")),
        60_000,
      )
      const check = () => {
        for (const peerId of repo.peers) {
          const storageId = repo.getStorageIdOfPeer(peerId)
          const remote = storageId && h.getRemoteHeads(storageId)
          if (remote && remote.join() === heads.join()) {
            clearTimeout(timer)
            h.off("remote-heads", check)
            resolve()
            return
          }
        }
      }
      h.on("remote-heads", check)
      check()
    })
    return { url: h.url, heads }
  },

  // Other peers: fetch the document from the server.
  async find({ url: docUrl }) {
    const h = repo.find(docUrl)
    // automerge-repo 1.x: find() returns the handle synchronously;
    // doc() resolves once it is ready (or undefined if unavailable).
    const doc = await h.doc()
    if (!doc || doc.kind !== "thread") {
      throw new Error(`could not get document ${docUrl} from the server (state ${h.state})`)
    }
    attach(h)
    return { heads: A.getHeads(doc) }
  },

  // Stop the adapter from reconnecting on its own while the server is down:
  // the parent will tell us when to connect again.
  async holdReconnect() {
    adapter.retryInterval = 0
    return {}
  },

  // Wait until our socket to the server is gone (server was stopped).
  async awaitOffline() {
    await waitFor(
      () => adapter.socket && adapter.socket.readyState === 3 /* CLOSED */ && repo.peers.length === 0,
      "the connection to the stopped server to close",
    )
    return {}
  },

  // Offline work: E edits, each its own change.
  async edit({ edits }) {
    const t0 = performance.now()
    for (let e = 0; e < edits; e++) {
      if (kind === "text") {
        const len = handle.docSync().body.length
        const pos = Math.floor(Math.random() * (len + 1))
        const ch = ALPHABET[Math.floor(Math.random() * ALPHABET.length)]
        handle.change(d => {
          A.splice(d, ["body"], pos, 0, ch)
        })
      } else {
        const id = randomBytes(16).toString("hex")
        const reply = { by: name, at: Date.now(), body: replyText(), reactions: {} }
        handle.change(d => {
          d.comments[id] = reply
        })
      }
    }
    const editMs = performance.now() - t0
    // persist locally, as the app would before the laptop sleeps
    await repo.flush()
    const doc = handle.docSync()
    return { count: count(doc), heads: A.getHeads(doc), editMs }
  },

  // Converge: reconnect now and report every change of the document.
  async connect() {
    reporting = true
    adapter.retryInterval = RETRY_MS
    adapter.connect(adapter.peerId, adapter.peerMetadata)
    report()
    return {}
  },

  async exit() {
    setTimeout(() => process.exit(0), 10)
    return {}
  },
}

process.on("message", async msg => {
  const fn = handlers[msg.cmd]
  try {
    if (!fn) throw new Error(`unknown command ${msg.cmd}`)
    const res = await fn(msg)
    process.send({ reply: msg.cmd, ...res })
  } catch (err) {
    process.send({ reply: msg.cmd, error: String(err && err.stack ? err.stack : err) })
  }
})

process.send({ event: "started" })
