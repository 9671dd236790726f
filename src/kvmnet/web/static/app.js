// kvmnet serve: keep the page current. Every few seconds ask /api/version; when it
// changed, fetch this view's fragment and put it in place of <main>. The fragment is
// HTML kvmnet's templates made (every value from the host escaped there). No inline
// script anywhere (the Content-Security-Policy forbids it); no other origin is asked.
const main = document.getElementById("main");
const status = document.getElementById("status");
const every = Math.max(0.5, Number(main.dataset.refresh) || 2) * 1000;
let version = main.dataset.version;

function say(text, cls) {
  status.textContent = text;
  status.className = cls;
}

async function tick() {
  try {
    const r = await fetch("/api/version", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const v = await r.json();
    if (v.version !== version) {
      const q = main.dataset.host ? `?host=${encodeURIComponent(main.dataset.host)}` : "";
      const f = await fetch(`/fragment/${main.dataset.view}${q}`,
                            { cache: "no-store", credentials: "same-origin" });
      if (!f.ok) throw new Error(`HTTP ${f.status}`);
      main.innerHTML = await f.text();
      version = f.headers.get("x-kvmnet-version") || v.version;
      main.dataset.version = version;
    }
    const t = new Date(v.taken * 1000).toISOString().slice(11, 19);
    say(`read ${t} UTC · read-only`, "ok");
  } catch (e) {
    say(`kvmnet serve cannot be reached (${e.message}); trying again`, "down");
  }
  setTimeout(tick, every);
}

setTimeout(tick, every);
