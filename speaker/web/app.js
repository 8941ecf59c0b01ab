// The page of `speaker serve`: enrol from the microphone, log in by voice (streamed, decided early),
// identify, list and remove speakers.  Plain JavaScript, no build step, nothing from another host.
// Recording: an AudioWorklet (pcm-worklet.js) captures 16-bit PCM at the audio context's rate; the
// stream sends it over the WebSocket as it comes, and a take is uploaded as what MediaRecorder
// made of it (WebM/Opus, MP4/AAC) or, where there is no MediaRecorder or the service cannot decode
// its format, as a WAV file of the same PCM.

const $ = (id) => document.getElementById(id);
const KEY_STORE = 'speaker-api-key';
let apiKey = sessionStorage.getItem(KEY_STORE) || '';
let preferWav = !('MediaRecorder' in window);
const MAX_TAKE_SECONDS = 20;

// ------------------------------------------------------------------ the API
function authHeaders(extra = {}) {
  return apiKey ? { ...extra, 'X-API-Key': apiKey } : extra;
}

async function api(method, path, body = null, contentType = null) {
  let response;
  try {
    response = await fetch(path, {
      method, body, headers: authHeaders(contentType ? { 'Content-Type': contentType } : {}),
    });
  } catch (err) {
    return { ok: false, status: 0, body: { error: 'network', detail: `the service cannot be reached (${err})` } };
  }
  let json = null;
  try { json = await response.json(); } catch (err) { json = null; }
  if (response.status === 401) askForKey(json && json.detail);
  return { ok: response.ok, status: response.status, body: json || {} };
}

function problem(r) {
  const b = r.body || {};
  return `${b.detail || 'the request failed'} (HTTP ${r.status}${b.error ? `, ${b.error}` : ''})`;
}

function askForKey(why) {
  $('key-section').hidden = false;
  $('key-status').textContent = why ? `The service says: ${why}.` : '';
  $('key').focus();
}

function validId(value) {
  return /^[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,127}$/.test(value);
}

// ------------------------------------------------------------------ the microphone
class Microphone {
  // start(onChunk): onChunk(Int16Array) gets PCM at this.rate Hz; with record=true a MediaRecorder
  // records the same stream (this.stop() then resolves to its Blob, or null).
  async start(onChunk, record = false) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.ctx = new AudioContext();
    this.rate = this.ctx.sampleRate;
    await this.ctx.audioWorklet.addModule('/web/pcm-worklet.js');
    this.node = new AudioWorkletNode(this.ctx, 'pcm-capture', { processorOptions: { chunk: 4096 } });
    this.node.port.onmessage = (e) => onChunk(e.data);
    this.source = this.ctx.createMediaStreamSource(this.stream);
    const mute = this.ctx.createGain();
    mute.gain.value = 0;                       // pulled by the destination, heard by nobody
    this.source.connect(this.node).connect(mute).connect(this.ctx.destination);
    this.parts = [];
    this.recorder = null;
    if (record && !preferWav) {
      try {
        this.recorder = new MediaRecorder(this.stream);
        this.recorder.ondataavailable = (e) => { if (e.data.size) this.parts.push(e.data); };
        this.recorder.start();
      } catch (err) { this.recorder = null; }
    }
  }

  async stop() {
    this.node.port.postMessage('flush');
    await new Promise((resolve) => setTimeout(resolve, 50));
    let blob = null;
    if (this.recorder && this.recorder.state !== 'inactive') {
      await new Promise((resolve) => { this.recorder.onstop = resolve; this.recorder.stop(); });
      blob = new Blob(this.parts, { type: this.recorder.mimeType || 'audio/webm' });
    }
    this.stream.getTracks().forEach((t) => t.stop());
    await this.ctx.close();
    return blob;
  }
}

function wavFile(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); v.setUint32(4, 36 + 2 * n, true); text(8, 'WAVE'); text(12, 'fmt ');
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, 'data'); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) { new Int16Array(buf, o, c.length).set(c); o += 2 * c.length; }
  return new Blob([buf], { type: 'audio/wav' });
}

// A take: the first click on `button` starts recording, the second (or MAX_TAKE_SECONDS) stops.
// check(): whether recording may start (e.g. a speaker id was typed).
function takeRecorder(button, timer, label, onTake, check = () => true) {
  let mic = null;
  let chunks = [];
  let started = 0;
  let ticker = null;
  const stop = async () => {
    if (!mic) return;
    const m = mic;
    mic = null;
    clearInterval(ticker);
    button.setAttribute('aria-pressed', 'false');
    button.textContent = label;
    timer.textContent = '';
    const compressed = await m.stop();
    await onTake({ wav: wavFile(chunks, m.rate), compressed, seconds: (Date.now() - started) / 1000 });
  };
  button.addEventListener('click', async () => {
    if (mic) { await stop(); return; }
    if (!check()) return;
    chunks = [];
    mic = new Microphone();
    try {
      await mic.start((c) => chunks.push(c), true);
    } catch (err) {
      mic = null;
      onTake({ error: `no microphone: ${err.message || err}` });
      return;
    }
    started = Date.now();
    button.setAttribute('aria-pressed', 'true');
    button.textContent = 'Stop';
    ticker = setInterval(() => {
      const s = (Date.now() - started) / 1000;
      timer.textContent = `${s.toFixed(1)} s`;
      if (s >= MAX_TAKE_SECONDS) stop();
    }, 100);
  });
}

// Upload takes: MediaRecorder's files, or WAVs when there is no MediaRecorder or the service cannot
// decode its format.  Several takes go in one multipart request (parts named "file").
function takeBody(takes, wav) {
  if (takes.length === 1) {
    const blob = wav ? takes[0].wav : takes[0].compressed;
    return [blob, blob.type.split(';')[0] || 'application/octet-stream'];
  }
  const form = new FormData();
  takes.forEach((t, i) => {
    const blob = wav ? t.wav : t.compressed;
    form.append('file', blob, `take-${i + 1}.${wav ? 'wav' : 'audio'}`);
  });
  return [form, null];
}

async function upload(path, ...takes) {
  if (!preferWav && takes.every((t) => t.compressed)) {
    const r = await api('POST', path, ...takeBody(takes, false));
    if (!(r.status === 422 && /cannot decode/i.test((r.body && r.body.detail) || ''))) return r;
    preferWav = true;                          // this service does not read the browser's format
  }
  return api('POST', path, ...takeBody(takes, true));
}

// ------------------------------------------------------------------ enrolment
// Each take is checked by the service's quality gates.  A new speaker needs some seconds of speech
// in all before anything is stored: takes that pass their own checks are kept here and sent again,
// together with the next take, until the speaker has enough.
function setUpEnrolment() {
  const id = $('enrol-id');
  let takes = 0;
  let pending = [];                            // [{take, item}] waiting for more speech in all
  let pendingFor = '';
  const check = () => {
    if (validId(id.value)) return true;
    $('enrol-result').textContent = 'Type a speaker id first (letters, digits, _ . @ + = -).';
    id.focus();
    return false;
  };
  takeRecorder($('enrol-record'), $('enrol-timer'), 'Record a take', async (take) => {
    const item = document.createElement('li');
    $('takes').appendChild(item);
    if (take.error) { item.textContent = take.error; item.className = 'bad'; return; }
    if (pendingFor !== id.value) { pending = []; pendingFor = id.value; }
    takes += 1;
    const n = takes;
    item.textContent = `take ${n}: ${take.seconds.toFixed(1)} s recorded, checking…`;
    const batch = [...pending.map((p) => p.take), take];
    const r = await upload(`/v1/speakers/${encodeURIComponent(id.value)}/enrollments`, ...batch);
    const b = r.body;
    if (r.ok && b.added) {
      for (const p of pending) { p.item.className = 'ok'; p.item.textContent = `${p.label}: added`; }
      pending = [];
      item.className = 'ok';
      item.textContent = `take ${n}: added`;
      $('enrol-result').textContent = `${b.speaker}: ${b.recordings} recording(s), `
        + `${b.speech_seconds.toFixed(1)} s of speech enrolled.`;
      listSpeakers();
    } else if (r.ok) {
      item.className = 'bad';
      item.textContent = `take ${n}: not added: ${b.skipped || b.reason || 'skipped'}`;
    } else if (r.status === 422 && b.error === 'insufficient_speaker_speech') {
      pending.push({ take, item, label: `take ${n}` });
      item.className = 'pending';
      item.textContent = `take ${n}: kept, not stored yet`;
      $('enrol-result').textContent = `Not enough speech yet: ${b.detail.replace(/ \(send several.*$/, '')}. `
        + 'Record another take.';
    } else {
      item.className = 'bad';
      item.textContent = `take ${n}: refused: ${problem(r)}`;
    }
  }, check);
}

// ------------------------------------------------------------------ streaming verification
function describe(m, claimed) {
  const llr = m.llr;
  const times = llr === null || llr === undefined ? '' : ` (LLR ${llr.toFixed(2)}: the voice is ${
    Math.exp(Math.abs(llr)) >= 1e6 ? 'over a million' : Math.round(Math.exp(Math.abs(llr))).toLocaleString('en')
  } times more likely ${llr >= 0 ? `${claimed}` : 'someone else'} than ${llr >= 0 ? 'someone else' : claimed})`;
  const when = m.early ? `decided early, after ${m.speech_seconds.toFixed(1)} s of speech`
    : `decided on the whole recording (${m.speech_seconds.toFixed(1)} s of speech)`;
  if (m.decision === 'accept') return [`Accepted as ${claimed}`, `${times}; ${when}.`];
  if (m.decision === 'reject') return [`Rejected: not ${claimed}`, `${times}; ${when}.`];
  return ['Undecided', `${m.reason ? `: ${m.reason}` : ''}${times}.`];
}

function setNeedle(m) {
  const needle = $('needle');
  if (m.evidence === null || m.accept_at === null) { needle.style.left = '50%'; return; }
  const a = m.accept_at;
  const b = m.reject_at;
  let x;
  if (m.evidence <= b) x = 30 * Math.max(0, 1 - (b - m.evidence) / Math.abs(b));
  else if (m.evidence >= a) x = 70 + 30 * Math.min(1, (m.evidence - a) / a);
  else x = 30 + 40 * ((m.evidence - b) / (a - b));
  needle.style.left = `${x.toFixed(1)}%`;
}

function setUpVerification() {
  const button = $('verify-start');
  const id = $('verify-id');
  let session = null;
  const finish = async () => {
    if (!session) return;
    const s = session;
    session = null;
    button.setAttribute('aria-pressed', 'false');
    button.textContent = 'Start speaking';
    try { await s.mic.stop(); } catch (err) { /* already stopped */ }
  };
  button.addEventListener('click', async () => {
    if (session) {                             // "Stop": decide on what was said
      if (session.ws.readyState === WebSocket.OPEN) session.ws.send('end');
      await finish();
      return;
    }
    if (!validId(id.value)) { $('verdict').textContent = 'Type the claimed speaker id first.'; id.focus(); return; }
    const claimed = id.value;
    $('verdict').textContent = '';
    $('verify-live').textContent = 'Listening…';
    const mic = new Microphone();
    const pending = [];
    let ws = null;
    try {
      await mic.start((c) => {
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(c.buffer); else pending.push(c);
      });
    } catch (err) {
      $('verdict').textContent = `No microphone: ${err.message || err}`;
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const query = new URLSearchParams({ sample_rate: String(mic.rate) });
    if (apiKey) query.set('api_key', apiKey);
    ws = new WebSocket(`${scheme}://${location.host}/v1/speakers/${encodeURIComponent(claimed)}/verify/stream?${query}`);
    ws.binaryType = 'arraybuffer';
    session = { ws, mic };
    button.setAttribute('aria-pressed', 'true');
    button.textContent = 'Stop';
    ws.onopen = () => { while (pending.length) ws.send(pending.shift().buffer); };
    ws.onmessage = async (e) => {
      const m = JSON.parse(e.data);
      if (m.error) {
        $('verdict').textContent = `Stopped: ${m.detail} (${m.error})`;
        if (m.error === 'unauthorized') askForKey(m.detail);
        await finish();
        return;
      }
      setNeedle(m);
      $('verify-live').textContent = `${m.speech_seconds.toFixed(1)} s of speech`
        + (m.score === null ? '' : `, score ${m.score.toFixed(3)}`)
        + (m.evidence === null || m.evidence === undefined ? '' : `, evidence ${m.evidence.toFixed(2)}`
           + ` (accept at ${m.accept_at.toFixed(2)}, reject at ${m.reject_at.toFixed(2)})`);
      if (m.final) {
        const [head, rest] = describe(m, claimed);
        const strong = document.createElement('strong');
        strong.className = m.decision;
        strong.textContent = head;
        $('verdict').replaceChildren(strong, document.createTextNode(rest));
        $('verdict').dataset.decision = m.decision;
        $('verdict').dataset.early = String(m.early);
        await finish();
      }
    };
    ws.onclose = (e) => {
      if (session && session.ws === ws) {
        if (e.code === 1008 && !$('verdict').textContent) askForKey('the stream was refused');
        finish();
      }
    };
  });
}

// ------------------------------------------------------------------ identification
function setUpIdentification() {
  takeRecorder($('identify-record'), $('identify-timer'), 'Record and identify', async (take) => {
    const out = $('identify-result');
    if (take.error) { out.textContent = take.error; return; }
    out.textContent = 'Identifying…';
    const r = await upload('/v1/identify?top=3', take);
    if (!r.ok) { out.textContent = `Refused: ${problem(r)}`; return; }
    const candidates = r.body.candidates || r.body.speakers;
    if (!candidates.length) { out.textContent = 'Nobody is enrolled.'; return; }
    const list = document.createElement('ol');
    for (const c of candidates) {
      const li = document.createElement('li');
      li.textContent = `${c.speaker}: ${c.decision || 'accept'}${c.reason ? ` (${c.reason})` : ''}, `
        + `score ${c.score.toFixed(3)}${c.llr === null ? '' : `, LLR ${c.llr.toFixed(2)}`}`;
      li.className = c.decision === 'accept' ? 'ok' : (c.decision === 'reject' ? 'bad' : 'pending');
      list.appendChild(li);
    }
    const accepted = r.body.speakers.map((c) => c.speaker);
    out.replaceChildren(document.createTextNode(accepted.length ? `Identified: ${accepted.join(', ')}. Best candidates:`
      : 'Nobody enrolled is accepted. Best candidates:'), list);
  });
}

// ------------------------------------------------------------------ the speakers
async function listSpeakers() {
  const r = await api('GET', '/v1/speakers');
  const body = $('speakers').querySelector('tbody');
  if (!r.ok) { $('speakers-status').textContent = `Cannot list the speakers: ${problem(r)}`; return; }
  body.replaceChildren();
  for (const s of r.body.speakers) {
    const tr = document.createElement('tr');
    const speech = s.speech_seconds === undefined ? s.frames / 100 : s.speech_seconds;
    for (const text of [s.speaker, String(s.recordings), `${speech.toFixed(1)} s`,
      s.updated_at.replace('T', ' ').replace('Z', '')]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    const td = document.createElement('td');
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${s.speaker}`);
    remove.addEventListener('click', async () => {
      if (!window.confirm(`Remove ${s.speaker} and all their recordings?`)) return;
      const d = await api('DELETE', `/v1/speakers/${encodeURIComponent(s.speaker)}`);
      $('speakers-status').textContent = d.ok ? `${s.speaker} removed.` : `Not removed: ${problem(d)}`;
      listSpeakers();
    });
    td.appendChild(remove);
    tr.appendChild(td);
    body.appendChild(tr);
  }
  $('speakers-status').textContent = `${r.body.speakers.length} speaker(s).`;
}

// ------------------------------------------------------------------ start
async function start() {
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    apiKey = $('key').value.trim();
    sessionStorage.setItem(KEY_STORE, apiKey);
    $('key-status').textContent = '';
    $('key-section').hidden = true;
    listSpeakers();
  });
  setUpEnrolment();
  setUpVerification();
  setUpIdentification();
  $('refresh').addEventListener('click', listSpeakers);
  const health = await api('GET', '/healthz');
  $('service').textContent = health.ok
    ? `Service ready: ${health.body.speakers} speaker(s), UBM of ${health.body.ubm.components} components.`
    : `The service is not ready: ${problem(health)}`;
  await listSpeakers();
  document.body.dataset.ready = 'true';
}

start();
