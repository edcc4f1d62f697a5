// The example on screen and its answers, in the browser (a Streamlit v2 component).
//
// Each render brings one *display*: an opaque token and the image, map A and map B as PNG bytes.
// The display is swapped in only once all three images are decoded; until then the previous one
// stays on screen, and a key answers what is on screen. Every press (key 1/2/3, arrows, or a
// button) gets a sequence number and the token of the display it was made on, and joins a queue
// sent whole to the server (so presses made during one server round trip are never merged
// away). One send at a time: the next waits until the server has reported the previous one
// (or RESEND_MS passed), because each send reruns the page's script, and a rerun requested
// while one runs interrupts it, so a steady stream of sends would keep the next display from
// ever being drawn. The server stores a press only if its token is the display it currently
// serves, and reports every press back: stored, or refused with a reason that is shown here, one
// notice per reason that adds up the presses refused for it (never one pushed out by the next).
// Presses are numbered 1, 2, 3, ... per press log of the server (webui/presses.py): the server
// takes them strictly in sequence, and a new log (another login on this page) restarts the count.
const KEYS = { "1": "A", ArrowLeft: "A", "2": "neither", ArrowDown: "neither", "3": "B", ArrowRight: "B" };
const NAMES = { A: "Map A", neither: "Neither", B: "Map B" };
const NOTICE_MS = 8000; // how long a notice stays after the last press it counts
const MAX_LISTED = 12;   // press numbers a notice lists (the latest); its count covers them all
const RESEND_MS = 3000;

let api = null;      // the latest component handle (setStateValue lives on it)
let root = null;     // our element inside the component's parent
let shown = null;    // {token} of the display on screen and answerable, else null
let drawn = "";      // the token of the display on screen, answerable or not
let renderCount = 0; // a newer display abandons an older one still decoding
let wanted;           // the token of the display last asked for
let seq = 0;         // presses counted on this page
let queue = [];      // presses not yet reported back by the server
let sentUpTo = 0;     // the last press sent and not yet reported back
let sentAt = 0;
let logName;          // the server's press log that this numbering belongs to
let seen = {};        // refusals per reason already shown
let reported = new Set(); // press numbers already shown as refused
const notices = new Map(); // reason -> {item, count, presses, message, timer}: its notice on screen
const urls = [];     // blob URLs of the display on screen (names that mean nothing, never reused)

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function parse(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headerLength)));
  const parts = [];
  let at = 4 + headerLength;
  for (const length of header.images || []) {
    parts.push(bytes.slice(at, at + length));
    at += length;
  }
  return { header, parts };
}

function listed(presses) {
  if (!presses.length) return "";
  const latest = presses.slice(-MAX_LISTED).join(", ");
  return ` (press${presses.length > 1 ? "es" : ""} ${presses.length > MAX_LISTED ? "…, " : ""}${latest})`;
}

// Adds `count` refusals for `reason` (`entries`: the numbered ones, [seq, reason, message]) to its notice.
function announce(reason, entries, count) {
  let notice = notices.get(reason);
  if (!notice || !notice.item.isConnected) {
    notice = { item: el("div", "hm-refused"), count: 0, presses: [], message: "" };
    notice.item.dataset.reason = reason;
    root.querySelector(".hm-notices").appendChild(notice.item);
    notices.set(reason, notice);
  }
  notice.count += count;
  for (const [pressSeq, , message] of entries) {
    notice.presses.push(pressSeq);
    notice.message = message;
  }
  notice.item.textContent = notice.count === 1 && notice.presses.length === 1 ? notice.message
    : `${notice.count} press${notice.count > 1 ? "es were" : " was"} not stored: ${reason}.${listed(notice.presses)}`;
  notice.item.dataset.presses = notice.presses.join(" ");
  notice.item.dataset.count = String(notice.count);
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => {
    notice.item.remove();
    if (notices.get(reason) === notice) notices.delete(reason);
  }, NOTICE_MS);
}

function updatePending() {
  const pending = root.querySelector(".hm-pending");
  pending.dataset.pending = String(queue.length);
  pending.textContent = queue.length ? `Saving ${queue.length} answer${queue.length > 1 ? "s" : ""}…` : "";
}

function press(button) {
  if (!root || !root.isConnected) return; // not on an annotation screen
  seq += 1;
  // with nothing answerable on screen the press still goes to the server, which says why it is refused
  queue.push({ seq, token: shown ? shown.token : drawn, button });
  updatePending();
  send();
}

function send() {
  if (!queue.length || !api) return;
  if (sentUpTo && Date.now() - sentAt < RESEND_MS) return; // the previous send is still under way
  sentUpTo = queue[queue.length - 1].seq;
  sentAt = Date.now();
  api.setStateValue("presses", queue.slice());
}
setInterval(send, RESEND_MS);

function onKey(event) {
  const button = KEYS[event.key];
  if (!button || event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
  if (!root || !root.isConnected) return;
  event.preventDefault();
  press(button);
}
document.addEventListener("keydown", onKey);

function buildRoot(parent) {
  // the notices move to the new root (Streamlit may mount the component afresh, e.g. on the end
  // screen): each stays its full time
  const kept = root ? root.querySelector(".hm-notices") : null;
  root = el("div", "hm-pair");
  root.append(el("div", "hm-display"), el("div", "hm-pending"), kept || el("div", "hm-notices"));
  parent.appendChild(root);
}

function imageOf(bytes, alt, cls) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  const img = el("img", cls);
  img.alt = alt;
  img.src = url;
  return { img, url };
}

function buildDisplay(header, parts) {
  const display = el("div", "hm-display");
  display.append(el("div", "hm-progress", header.progress));
  if (!parts.length) {
    display.append(el("div", "hm-unavailable", header.unavailable));
    return { display, made: [] };
  }
  const made = [imageOf(parts[0], "the image", "hm-image"), imageOf(parts[1], "map A", "hm-map"),
    imageOf(parts[2], "map B", "hm-map")];
  const top = el("div", "hm-top");
  const prediction = el("div", "hm-prediction", "Model prediction: ");
  prediction.append(el("b", "hm-class", header.prediction));
  top.append(made[0].img, prediction);
  const row = el("div", "hm-row");
  const column = (img, button) => {
    const box = el("div", "hm-side");
    if (img) box.append(img);
    const b = el("button", "hm-button" + (header.answered === button ? " hm-chosen" : ""), NAMES[button]);
    b.type = "button";
    b.dataset.choice = button;
    b.addEventListener("click", () => press(button));
    box.append(b);
    return box;
  };
  row.append(column(made[1].img, "A"), column(null, "neither"), column(made[2].img, "B"));
  const caption = header.answered
    ? `Your answer: ${NAMES[header.answered]}. Press another to change it.`
    : "Keys: 1 or ← for map A, 2 or ↓ for Neither, 3 or → for map B.";
  display.append(top, el("div", "hm-instruction", header.instruction), row, el("div", "hm-caption", caption));
  return { display, made };
}

async function showDisplay(header, parts, mine) {
  const { display, made } = buildDisplay(header, parts);
  try {
    await Promise.all(made.map((m) => m.img.decode()));
  } catch (error) {
    made.forEach((m) => URL.revokeObjectURL(m.url));
    if (mine !== renderCount) return;
    shown = null;
    drawn = "";
    root.querySelector(".hm-display").replaceWith(
      el("div", "hm-display hm-unavailable", "The images of this example could not be shown: use Next to move on."));
    return;
  }
  if (mine !== renderCount) { made.forEach((m) => URL.revokeObjectURL(m.url)); return; }
  root.querySelector(".hm-display").replaceWith(display);
  urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  made.forEach((m) => urls.push(m.url));
  shown = made.length && header.token ? { token: header.token } : null;
  drawn = header.token || "";
  root.dataset.token = drawn;
}

// A new press log on the server (another login on this page): the presses not reported yet are
// numbered from 1 again, and its refusals counted afresh.
function follow(name) {
  if (logName !== undefined && name !== logName) {
    queue.forEach((p, i) => { p.seq = i + 1; });
    seq = queue.length;
    sentUpTo = 0;
    seen = {};
    reported = new Set();
  }
  logName = name;
}

function report(header) {
  follow(header.log);
  const processed = header.processed || 0;
  root.dataset.processed = String(processed);
  const entries = (header.refused || []).filter((e) => Number.isInteger(e[0]) && !reported.has(e[0]));
  const refusedNow = new Set();
  for (const [reason, total] of Object.entries(header.refusals || {})) {
    const fresh = total - (seen[reason] || 0);
    seen[reason] = total;
    if (fresh <= 0) continue;
    const mine = entries.filter((e) => e[1] === reason).slice(-fresh);
    mine.forEach((e) => { reported.add(e[0]); refusedNow.add(e[0]); });
    announce(reason, mine, fresh);
  }
  // handled, or refused without being handled (out of sequence): neither is sent again
  queue = queue.filter((p) => p.seq > processed && !refusedNow.has(p.seq));
  if (processed >= sentUpTo) sentUpTo = 0;
  updatePending();
  send();
}

export default function (component) {
  api = component;
  if (!root || !root.isConnected || root.parentNode !== component.parentElement) {
    buildRoot(component.parentElement);
    shown = null;
    drawn = "";
    wanted = undefined;
  }
  const { header, parts } = parse(component.data);
  report(header);
  const token = header.token || "";
  if (token === wanted) return; // the same display (or one already decoding): nothing to redraw
  wanted = token;
  renderCount += 1;
  if (!token) {
    shown = null;
    drawn = "";
    root.dataset.token = "";
    root.querySelector(".hm-display").replaceWith(el("div", "hm-display"));
  } else {
    showDisplay(header, parts, renderCount);
  }
}
