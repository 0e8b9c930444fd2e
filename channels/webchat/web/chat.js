// The web chat page: talks JSON to /chat/api and hears replies as server-sent events.
//
// Invariants kept here:
// - Message text is only ever put on the page as text nodes, never parsed as HTML: nothing a reply says is markup.
// - Each reply is shown once: replies carry increasing ids and anything at or below the highest id seen is ignored,
//   whether it came from the history request or the event stream.
// - Each message posted carries a client id; retrying a POST with the same id is recorded once by the server.
// - Tabs of one session agree: the learner's side of the conversation (what they said, and which message's
//   choices they used) is kept in localStorage, and a tab shows what another tab adds to it (the storage event).
// - A pressed choice spends that message's choices only; typed text spends none (a lesson's "Next ▸" stays usable).
// - The newest reply, with its buttons, is brought into view whenever replies arrive, unless the learner has
//   scrolled up to read earlier ones.
// - A tab out of sight for HIDDEN_REST_MS gives its event stream back (over HTTP/1.1 a browser opens six connections
//   to one server, and each tab's stream holds one: a seventh tab would wait), and opens it again when shown, with
//   the replies it has not shown yet.
// - The page's own words come from the server (GET chat/api/words), in the learner's language; until they arrive,
//   and for any word missing, the English ones below are shown.
"use strict";

(() => {
  const API = "chat/api";
  const MAX_CHARS = 4000; // the server's limit (channels/webchat/channel.py MAX_TEXT_CHARS)
  const COUNTER_FROM = 3500; // show the counter only when the limit is near
  const SEND_ATTEMPTS = 3; // tries of one POST through network errors and 5xx answers
  const TYPING_TIMEOUT_MS = 60000;
  const HISTORY_PAGES = 50;
  // While the server refuses the event stream (too many from one address: a classroom behind one router), replies
  // are asked for every POLL_MS, and the stream tried again after a wait that doubles up to STREAM_RETRY_MAX_MS;
  // refused because the server cannot read the chat (the database away: a 503), the page says it is offline until a
  // read works again, and then tries the stream at once.
  const POLL_MS = 3000;
  const STREAM_RETRY_MAX_MS = 30000;
  const HIDDEN_REST_MS = 30000;
  const SESSION_KEY = "lessonbot.session";
  // The server gives the page its replies only, so the learner's own side of the conversation is kept here: what
  // they said, the id of the last reply shown before it, and the reply whose choice they pressed (if they did).
  const SENT_KEY_PREFIX = "lessonbot.sent.";
  const SENT_KEEP = 200;
  // The language the page sends with each message, as a platform tells the app's language: a short BCP 47 tag.
  const LANGUAGE_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$/;
  // A start link's payload, as Telegram allows one: the page opened as /?start=PAYLOAD (a course's id, an access
  // code) sends it with the messages of a conversation the bot has not answered yet, for the set-up to read.
  const START_PAYLOAD = /^[A-Za-z0-9_-]{1,64}$/;
  const startLink = new URLSearchParams(window.location.search).get("start");

  const $ = (id) => document.getElementById(id);
  const els = {
    body: document.querySelector(".chat-body"),
    log: $("log"),
    messages: $("messages"),
    empty: $("empty"),
    typing: $("typing"),
    typingSaid: $("typing-said"),
    newMessage: $("new-message"),
    error: $("error"),
    form: $("composer"),
    input: $("input"),
    send: $("send"),
    counter: $("counter"),
    status: $("status"),
    newChat: $("new-chat"),
  };
  let numbers = new Intl.NumberFormat("en");

  // The page's words, by key; replaced by the server's (applyWords). `{command}`, `{status}`, `{count}` and `{limit}`
  // are filled in here.
  const words = {
    connecting: "Connecting…",
    online: "Online",
    polling: "Online (updates every few seconds)",
    offline: "Offline",
    typing: "Lessonbot is typing…",
    bot_said: "Lessonbot said:",
    you_said: "You said:",
    choices: "Choices",
    new_conversation: "New conversation",
    unreachable: "Lessonbot can't be reached right now. Check your connection and try again.",
    retrying: "Lessonbot can't be reached right now; trying again…",
    refused: "Lessonbot could not take that (error {status}). Please try again.",
    too_long: "This message is {count} characters long; the limit is {limit}. Please shorten it.",
    too_many: "Lessonbot is getting too many messages right now. Please wait a moment and try again.",
    new_chat_confirm:
      "Start a new chat? This chat and its progress can't be opened again from this browser.",
    new_message: "New message",
    document: "document",
    download: "Download",
  };
  // The page's language as the server named it with its words (null until then), and the keys it gave words for
  // in it: a word the server did not give is English, and is not put into a page in another language.
  let pageLanguage = null;
  let translated = new Set();

  let session = null;
  let lastReplyId = 0;
  let events = null;
  let streamRefusals = 0; // the stream refused in a row (its "open" starts the count over)
  let restTimer = null; // closes the stream of a tab hidden for HIDDEN_REST_MS
  let resting = false; // the stream was closed because the tab is hidden
  let typingTimer = null;
  let draftItem = null; // the bubble showing a reply as it is written, if any (outside the log: never announced)
  let sending = false;
  let stream = "connecting"; // the reply stream: connecting, online, polling (refused; replies asked for) or offline
  const shownSent = new Set(); // ids of the learner's messages on this page (sent here, or by another tab)
  const spentReplies = new Set(); // ids of the replies whose choices the learner has used

  // storage (may be unavailable, e.g. in some private windows: the chat then lasts as long as the tab) -----------

  const store = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        window.localStorage.setItem(key, value);
      } catch {
        /* not kept across reloads; nothing else to do */
      }
    },
    remove(key) {
      try {
        window.localStorage.removeItem(key);
      } catch {
        /* see set */
      }
    },
  };

  function sentKey() {
    return SENT_KEY_PREFIX + (session || "").split(".")[0];
  }

  function loadSent() {
    try {
      const items = JSON.parse(store.get(sentKey()) || "[]");
      return Array.isArray(items)
        ? items.filter((m) => m && typeof m.text === "string" && Number.isInteger(m.after))
        : [];
    } catch {
      return [];
    }
  }

  /** Keep a message the server took: `spent`, the id of the reply whose choice it was (null for typed text). */
  function rememberSent(sent) {
    const items = loadSent();
    items.push(sent);
    store.set(sentKey(), JSON.stringify(items.slice(-SENT_KEEP)));
  }

  // HTTP ---------------------------------------------------------------------------------------------------------

  /** What the learner is told; `unreachable`: the server could not be reached (or is down), not a refusal. */
  class ChatError extends Error {
    constructor(message, { unreachable = false } = {}) {
      super(message);
      this.unreachable = unreachable;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function clientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID exists only on https and localhost; a page opened by address on a local network lacks it.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function request(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init); // throws only when the server could not be reached
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    return { status: response.status, ok: response.ok, data };
  }

  /** What the learner is told of a refusal: the page's own words for those it knows (in the page's language), else
   * the server's sentence on a page in English (the server writes it in English: "could not be recorded just now"),
   * else the page's general one. */
  function serverMessage(response, fields = {}) {
    const known = knownRefusal(response.status, fields);
    if (known) return known;
    if (response.data && typeof response.data.error === "string" && speaksEnglish()) return response.data.error;
    return refusedWords(response.status);
  }

  /** The refusals the page words itself (a message too long, too many messages); null for the others. */
  function knownRefusal(status, fields) {
    const length = typeof fields.text === "string" ? Array.from(fields.text).length : 0;
    if (status === 413 && length > MAX_CHARS && ownWord("too_long")) {
      const said = ownWord("too_long");
      return said.replace("{count}", numbers.format(length)).replace("{limit}", numbers.format(MAX_CHARS));
    }
    if (status === 429 && ownWord("too_many")) return ownWord("too_many");
    return status === 413 || status === 429 ? refusedWords(status) : null;
  }

  function refusedWords(status) {
    return words.refused.replace("{status}", String(status));
  }

  /** A word in the page's language, or null if the server gave none in it (the English one stays for English). */
  function ownWord(key) {
    return translated.has(key) || speaksEnglish() ? words[key] : null;
  }

  /** Whether the page is in English: the server named English, or no language yet (its words are the English ones). */
  function speaksEnglish() {
    return !pageLanguage || pageLanguage.split("-")[0] === "en";
  }

  // Newer words a catalogue may not have yet, and the word said in their place in the page's language.
  const STAND_INS = { polling: "online", new_chat_confirm: "new_chat_title" };

  function spoken(key) {
    return ownWord(key) || words[STAND_INS[key] || key];
  }

  const refused = (response) => response.status === 401 || response.status === 403;

  // session --------------------------------------------------------------------------------------------------------

  async function createSession() {
    const response = await request("POST", `${API}/sessions`);
    if (!response.ok || !response.data || typeof response.data.session !== "string") {
      throw new ChatError(serverMessage(response));
    }
    session = response.data.session;
    store.set(SESSION_KEY, session);
    lastReplyId = 0;
  }

  /** The server hands back the same session issued anew with each use (a session ends only when left unused). */
  function keepSession(response) {
    const renewed = response.data && response.data.session;
    if (typeof renewed === "string" && session && renewed.split(".")[0] === session.split(".")[0]) {
      session = renewed;
      // not over a session another tab has just started (this tab follows it once told: followSession)
      const stored = store.get(SESSION_KEY);
      if (!stored || stored.split(".")[0] === session.split(".")[0]) store.set(SESSION_KEY, session);
    }
  }

  // the page's words -------------------------------------------------------------------------------------------------

  /** The page's words in the learner's language (or the browser's, before the bot knows the learner). */
  async function loadWords() {
    const query = session ? `?session=${encodeURIComponent(session)}` : "";
    let response;
    try {
      response = await request("GET", `${API}/words${query}`);
    } catch {
      return; // the English words stay
    }
    if (response.ok && response.data && response.data.words) applyWords(response.data.language, response.data.words);
  }

  function applyWords(language, given) {
    for (const [key, value] of Object.entries(given)) {
      if (typeof value === "string" && value) words[key] = value;
    }
    translated = new Set(Object.keys(given).filter((key) => typeof given[key] === "string" && given[key]));
    if (typeof language === "string" && language) {
      pageLanguage = language;
      document.documentElement.lang = language;
      try {
        numbers = new Intl.NumberFormat(language);
      } catch {
        /* keep the English digits grouping */
      }
    }
    const say = (key) => (typeof given[key] === "string" && given[key] ? given[key] : null);
    for (const element of document.querySelectorAll("[data-word]")) {
      const text = say(element.dataset.word);
      if (text) element.textContent = text;
    }
    for (const element of document.querySelectorAll("[data-word-placeholder]")) {
      const text = say(element.dataset.wordPlaceholder);
      if (text) element.placeholder = text;
    }
    for (const element of document.querySelectorAll("[data-word-label]")) {
      const text = say(element.dataset.wordLabel);
      if (text) element.setAttribute("aria-label", text);
    }
    for (const element of document.querySelectorAll("[data-word-title]")) {
      const text = say(element.dataset.wordTitle);
      if (text) element.title = text;
    }
    const hint = say("welcome_hint");
    if (hint && hint.includes("{command}")) {
      const [before, after] = hint.split("{command}", 2);
      const command = document.createElement("kbd");
      command.textContent = "/start";
      $("welcome-hint").replaceChildren(before, command, after);
    }
    if (say("title")) document.title = given.title;
    relabelMessages();
    showStatus();
  }

  /** The words the page put in the messages already shown, in the page's language now (only those that change:
   * the log would announce words put in again). */
  function relabelMessages() {
    for (const label of els.messages.querySelectorAll(".message > .visually-hidden")) {
      const said = label.parentElement.classList.contains("message--bot") ? words.bot_said : words.you_said;
      if (label.textContent !== said) label.textContent = said;
    }
    for (const group of els.messages.querySelectorAll(".choices")) group.setAttribute("aria-label", words.choices);
  }

  /** The language sent with a message: the browser's own, as a platform tells its app's language. Not the page's,
   * which falls back to English where there is no catalogue for the browser's: the bot then goes by the course the
   * learner picks, as it does for a platform's language it does not speak. */
  function languageHint() {
    const language = navigator.language;
    return typeof language === "string" && LANGUAGE_TAG.test(language) ? language : undefined;
  }

  /** The start link's payload to send with a message: only before the bot has answered this conversation (its
   * set-up then has it), and only one a start link may carry. */
  function startLinkHint() {
    if (!startLink || !START_PAYLOAD.test(startLink)) return undefined;
    return els.messages.querySelector(".message--bot") ? undefined : startLink;
  }

  /** The stored session was refused (the server's key changed, or it was altered): continue in a new one. */
  async function renewSession() {
    const hadMessages = els.messages.children.length > 0;
    await createSession();
    if (hadMessages) appendDivider(words.new_conversation);
    openEvents();
  }

  function historyPath(after) {
    return `${API}/messages?session=${encodeURIComponent(session)}&after=${after}`;
  }

  async function loadHistory() {
    const replies = [];
    let after = 0;
    for (let page = 0; page < HISTORY_PAGES; page++) {
      const response = await request("GET", historyPath(after));
      if (refused(response)) {
        store.remove(sentKey());
        await createSession();
        return;
      }
      if (!response.ok) throw new ChatError(serverMessage(response), { unreachable: response.status >= 500 });
      keepSession(response);
      const batch = response.data.replies || [];
      if (!batch.length) break;
      replies.push(...batch);
      after = batch[batch.length - 1].id;
    }
    // Each remembered message of the learner goes before the first reply it had not yet seen; the choices it
    // answered are spent, as they were when it was sent.
    const sent = loadSent();
    let next = 0;
    const replayLearner = () => showSent(sent[next++]);
    for (const reply of replies) {
      while (next < sent.length && sent[next].after < reply.id) replayLearner();
      showReply(reply, { quiet: true });
    }
    while (next < sent.length) replayLearner();
    scrollToEnd(true);
  }

  /** One remembered message of the learner, put at its place: before the first reply it had not yet seen. */
  function showSent(sent) {
    if (typeof sent.id === "string") shownSent.add(sent.id);
    const item = learnerItem(sent.text);
    const replies = Array.from(els.messages.querySelectorAll(".message--bot"));
    els.messages.insertBefore(item, replies.find((reply) => Number(reply.dataset.id) > sent.after) || null);
    updateEmptyState();
    if (Number.isInteger(sent.spent)) {
      spendChoicesOf(sent.spent);
    } else if (sent.spent === undefined) {
      disableChoices(els.messages); // kept by an earlier version of this page, which spent every choice shown
    }
  }

  // other tabs of this session ---------------------------------------------------------------------------------------

  /** Another tab of this browser sent a message: show it here too, and spend the choice it used. */
  function showSentElsewhere() {
    let added = false;
    for (const sent of loadSent()) {
      if (typeof sent.id !== "string" || shownSent.has(sent.id)) continue;
      showSent(sent);
      added = true;
    }
    if (added) revealNewest();
  }

  /** Another tab started a new chat (or had its session replaced): this one goes over to it, as a reload would. */
  function followSession(token) {
    if (!token || (session && token.split(".")[0] === session.split(".")[0])) return;
    if (events) events.close();
    events = null;
    session = null;
    forgetConversation();
    start();
  }

  function forgetConversation() {
    els.messages.replaceChildren();
    lastReplyId = 0;
    shownSent.clear();
    spentReplies.clear();
    dropDraft();
    hideTyping();
    hideError();
    hideNewMessage();
    updateEmptyState();
  }

  function onStorage(event) {
    if (event.key === SESSION_KEY) {
      followSession(event.newValue);
    } else if (event.key === sentKey() && session) {
      showSentElsewhere();
    }
  }

  // replies as server-sent events ----------------------------------------------------------------------------------

  function openEvents() {
    if (events) events.close();
    // tried again while replies come by polling, or while the server cannot read the chat: still true
    if (!stillSaid()) setStatus("connecting");
    const source = new EventSource(
      `${API}/events?session=${encodeURIComponent(session)}&after=${lastReplyId}`
    );
    events = source;
    let retrying = false; // the stream was lost and the browser is trying it again
    source.addEventListener("open", () => {
      retrying = false;
      streamRefusals = 0;
      setStatus("online");
      hideError({ onlyUnreachable: true }); // reconnected: "can't be reached" is no longer true
    });
    // Each event's data is JSON; one that is not is logged and skipped.
    const onJson = (name, handle) =>
      source.addEventListener(name, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (error) {
          console.error(`a ${name} that is not JSON`, error);
          return;
        }
        handle(data);
      });
    onJson("reply", showReply);
    onJson("draft", (draft) => showDraft(typeof draft.text === "string" ? draft.text : "", draft.html));
    resting = false;
    restIfHidden();
    source.addEventListener("error", () => {
      if (source !== events) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (the browser then gives up): find out why and reconnect.
        source.close();
        events = null;
        if (!stillSaid()) setStatus("connecting");
        recoverEvents();
      } else if (retrying) {
        // A try found no server (stopped, or the network to it gone): said, as when the page cannot open the chat;
        // the browser goes on trying, and the stream's "open" says it is back.
        setStatus("offline");
        showError(words.retrying, { unreachable: true });
      } else {
        retrying = true;
        setStatus("connecting"); // the browser reconnects by itself, sending the last event id
      }
    });
  }

  /** While replies come by polling, or the chat cannot be read (offline), trying the stream again leaves the status
   * line as it is: still true until the stream opens ("Online"), and not flipped to "Connecting…" at every try. */
  function stillSaid() {
    return stream === "polling" || stream === "offline";
  }

  /** A hidden tab closes its stream after HIDDEN_REST_MS, unless it is shown again before. */
  function restIfHidden() {
    clearTimeout(restTimer);
    restTimer = null;
    if (document.visibilityState !== "hidden") return;
    restTimer = setTimeout(() => {
      restTimer = null;
      if (document.visibilityState !== "hidden" || !events) return;
      events.close();
      events = null;
      resting = true;
    }, HIDDEN_REST_MS);
  }

  /** Shown again: a stream closed while hidden is opened again (from the last reply shown); hidden: see above. */
  function onVisibility() {
    restIfHidden();
    if (document.visibilityState === "visible" && resting) {
      resting = false;
      if (!events && session) openEvents();
    }
  }

  async function recoverEvents() {
    // EventSource tells no status code, so ask the same question as a plain request: a session no longer valid is
    // made anew; otherwise the replies since the last one shown are fetched as plain requests until the stream is
    // tried again (the server may refuse it for a while: too many streams from one address).
    const wait = Math.min(STREAM_RETRY_MAX_MS, 2000 * 2 ** streamRefusals);
    streamRefusals += 1;
    const until = Date.now() + wait;
    for (;;) {
      const offline = stream === "offline";
      if (events || !(await pollReplies()) || events) return;
      if (offline && stream === "polling") break; // the chat is read again: so may the stream be, now
      if (Date.now() >= until) break;
      await sleep(Math.min(POLL_MS, until - Date.now()));
    }
    openEvents();
  }

  /** Ask for the replies since the last one shown, as a plain request, while the stream is refused; the status line
   * says whether they still come. False if the session was refused and replaced instead (its stream is open). */
  async function pollReplies() {
    try {
      const response = await request("GET", historyPath(lastReplyId));
      if (refused(response)) {
        await renewSession();
        return false;
      }
      if (events) return true; // reopened meanwhile (the browser came back online)
      // Replies still arrive, every few seconds: the page is online, if more slowly.
      setStatus(response.ok ? "polling" : "offline");
      if (response.ok) {
        hideError({ onlyUnreachable: true });
        for (const reply of response.data.replies || []) showReply(reply);
      } else if (response.status >= 500) {
        showError(words.retrying, { unreachable: true }); // the server cannot read the chat now (the database away)
      }
    } catch {
      if (!events) setStatus("offline"); // still unreachable: ask again, and the stream is tried again
    }
    return true;
  }

  // sending --------------------------------------------------------------------------------------------------------

  /** POST one message, retrying through network errors and 5xx with the same client `id` (recorded once). */
  async function postMessage(fields, id) {
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      if (!session) await createSession();
      let response;
      try {
        const language = languageHint();
        const start = startLinkHint();
        response = await request("POST", `${API}/messages`, {
          session, id, ...fields, ...(language && { language }), ...(start && { start }),
        });
      } catch {
        if (attempt >= SEND_ATTEMPTS) {
          throw new ChatError(words.unreachable, { unreachable: true });
        }
        await sleep(400 * 2 ** attempt);
        continue;
      }
      if (refused(response) && !renewed) {
        renewed = true;
        await renewSession();
        continue;
      }
      if (response.status >= 500 && attempt < SEND_ATTEMPTS) {
        await sleep(400 * 2 ** attempt);
        continue;
      }
      if (!response.ok) throw sendFailure(response, fields);
      keepSession(response);
      return response.data;
    }
  }

  /** What the learner is told of a message not taken: a 5xx that is not the server's own answer (none of its JSON:
   * a proxy in front, answering for a server that is down or does not answer) is the server out of reach. */
  function sendFailure(response, fields) {
    const ours = response.data && typeof response.data.error === "string";
    if (response.status >= 500 && !ours) return new ChatError(words.unreachable, { unreachable: true });
    return new ChatError(serverMessage(response, fields), { unreachable: response.status >= 500 });
  }

  function showFailure(error) {
    if (!(error instanceof ChatError)) console.error(error);
    const unreachable = !(error instanceof ChatError) || error.unreachable;
    showError(error instanceof ChatError ? error.message : words.unreachable, { unreachable });
  }

  /** Send one message, shown as `shown`; `spends`: the reply whose choice this is (its choices are spent). */
  async function send(fields, shown, { spends = null } = {}) {
    if (sending) return false;
    sending = true;
    setBusy(true);
    const id = clientId();
    const after = lastReplyId;
    const bubble = appendLearner(shown, { pending: true });
    shownSent.add(id);
    // Done now, not once the POST answers: the reply (with its own choices) may come over the event stream first.
    const spent = spends ? disableChoices(spends) : [];
    showTyping();
    // Set before the POST too: its reply may come over the event stream before the POST answers.
    wordsMayChange = true;
    try {
      await postMessage(fields, id);
      wordsMayChange = true;
      bubble.classList.remove("message--pending");
      const spentReply = spends ? Number(spends.dataset.id) : null;
      if (spentReply) spentReplies.add(spentReply);
      rememberSent({ id, text: shown, after, spent: spentReply }); // other tabs show it now (onStorage)
      hideError();
      return true;
    } catch (error) {
      bubble.remove();
      shownSent.delete(id);
      enableChoices(spent);
      hideTyping();
      updateEmptyState();
      showFailure(error);
      return false;
    } finally {
      sending = false;
      setBusy(false);
    }
  }

  /** Send what is typed. The box is emptied at once, for the next message; a message refused comes back to it to be
   * mended, unless something new was typed meanwhile. */
  async function sendTyped() {
    const text = els.input.value;
    if (!text.trim() || sending) {
      els.input.focus();
      return;
    }
    setInput("");
    const sent = await send({ text }, text);
    if (!sent && !els.input.value) setInput(text);
    els.input.focus();
  }

  /** Focus goes on to the message box after a button that goes away (or is disabled) is pressed; not after a touch,
   * where it would open the phone's keyboard unasked. */
  function focusInputAfter(event) {
    if (event.pointerType !== "touch") els.input.focus();
  }

  function setInput(text) {
    els.input.value = text;
    resizeInput();
    updateCounter();
  }

  /** A choice pressed under `item`: said as the learner's message. */
  async function sendChoice(choice, item, event) {
    if (sending) return;
    focusInputAfter(event);
    await send({ choice: choice.value }, choice.label, { spends: item });
  }

  // rendering ------------------------------------------------------------------------------------------------------

  const LINK = /\bhttps?:\/\/[^\s<>"']+/g;

  /** Text as text nodes, with web addresses made into links; line breaks are kept by CSS (pre-wrap). */
  function appendText(parent, text) {
    let at = 0;
    for (const match of text.matchAll(LINK)) {
      let url = match[0];
      const trailing = url.match(/[.,;:!?)\]]+$/); // sentence punctuation after an address is not part of it
      if (trailing) url = url.slice(0, -trailing[0].length);
      parent.append(document.createTextNode(text.slice(at, match.index)));
      const link = document.createElement("a");
      link.href = url;
      link.textContent = url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      parent.append(link);
      at = match.index + url.length;
    }
    parent.append(document.createTextNode(text.slice(at)));
  }

  // The only HTML the page shows: the server's rendering of a reply's light Markdown (channels/markdown.py), copied
  // element by element through this allow-list, so nothing else it might hold (a script, a handler, a style, a
  // javascript: address) reaches the page. Without it, the plain text is shown. Its text goes in as text nodes, a
  // bare web address in it made a link as in plain text (not inside a link or code, which stay as they are).
  const ALLOWED = new Set(["P", "BR", "UL", "OL", "LI", "STRONG", "EM", "CODE", "PRE", "A"]);
  const UNLINKED = new Set(["A", "CODE", "PRE"]);

  function fillBubble(parent, html, text) {
    if (typeof html !== "string") {
      appendText(parent, typeof text === "string" ? text : "");
      return;
    }
    const copy = (from, to, linkable) => {
      for (const node of from.childNodes) {
        if (node.nodeType === Node.TEXT_NODE) {
          if (linkable) appendText(to, node.data);
          else to.append(document.createTextNode(node.data));
        } else if (node.nodeType === Node.ELEMENT_NODE && ALLOWED.has(node.tagName)) {
          const element = document.createElement(node.tagName.toLowerCase());
          const url = node.tagName === "A" ? safeUrl(node.getAttribute("href")) : null;
          if (url) Object.assign(element, { href: url, target: "_blank", rel: "noopener noreferrer" });
          const start = node.tagName === "OL" ? Number(node.getAttribute("start")) : NaN;
          if (Number.isInteger(start) && start > 1) element.start = start;
          copy(node, element, linkable && !UNLINKED.has(node.tagName));
          to.append(element);
        } else if (node.nodeType === Node.ELEMENT_NODE) {
          copy(node, to, linkable);
        }
      }
    };
    copy(new DOMParser().parseFromString(html, "text/html").body, parent, true);
  }

  /** A message of `who` ("bot" or "learner"), not yet on the page: an item of the log, or `tag`. */
  function messageItem(who, tag = "li") {
    const item = document.createElement(tag);
    item.className = `message message--${who}`;
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = who === "bot" ? words.bot_said : words.you_said;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    item.append(label, bubble);
    return item;
  }

  function learnerItem(text) {
    const item = messageItem("learner");
    appendText(item.querySelector(".bubble"), text);
    return item;
  }

  function appendLearner(text, { pending = false } = {}) {
    const item = learnerItem(text);
    if (pending) item.classList.add("message--pending");
    els.messages.append(item);
    updateEmptyState();
    return item;
  }

  function appendDivider(text) {
    const item = document.createElement("li");
    item.className = "divider";
    item.textContent = text;
    // A message being sent when the session was replaced belongs to the new conversation.
    els.messages.insertBefore(item, els.messages.querySelector(".message--pending"));
  }

  function safeUrl(url) {
    if (typeof url !== "string") return null;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  /** A document (a certificate): its name, and a link that downloads it (an address only this session can use). */
  function renderDocument(bubble, reply) {
    const card = document.createElement("div");
    card.className = "document";
    const icon = document.createElement("span");
    icon.className = "document-icon";
    icon.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "document-name";
    const url = safeUrl(reply.url);
    const filename = typeof reply.filename === "string" && reply.filename ? reply.filename : words.document;
    name.textContent = filename;
    card.append(icon, name);
    if (url) {
      const link = document.createElement("a");
      link.className = "document-download";
      link.href = url;
      link.textContent = words.download;
      link.setAttribute("aria-label", `${words.download}: ${filename}`);
      if (new URL(url).origin === window.location.origin) {
        link.download = filename; // ours: saved as a file, not opened in place of the chat
      } else {
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      card.append(link);
    }
    bubble.append(card);
    if (typeof reply.caption === "string" && reply.caption) {
      const caption = document.createElement("div");
      caption.className = "document-caption";
      fillBubble(caption, reply.caption_html, reply.caption);
      bubble.append(caption);
    }
  }

  function renderChoices(item, choices) {
    const group = document.createElement("div");
    group.className = "choices";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", words.choices);
    for (const choice of choices) {
      if (!choice || typeof choice.label !== "string" || typeof choice.value !== "string") continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.textContent = choice.label;
      button.disabled = spentReplies.has(Number(item.dataset.id));
      button.addEventListener("click", (event) => sendChoice(choice, item, event));
      group.append(button);
    }
    item.append(group);
  }

  /** Spend the choices within `scope` (the message whose choice was pressed); returns the buttons it disabled. */
  function disableChoices(scope) {
    const buttons = Array.from(scope.querySelectorAll(".choice:not(:disabled)"));
    buttons.forEach((button) => (button.disabled = true));
    return buttons;
  }

  /** The choices of the reply `replyId` were used (here or in another tab): spent, now and when it is shown. */
  function spendChoicesOf(replyId) {
    spentReplies.add(replyId);
    const item = els.messages.querySelector(`.message--bot[data-id="${replyId}"]`);
    if (item) disableChoices(item);
  }

  function enableChoices(buttons) {
    buttons.forEach((button) => (button.disabled = false));
  }

  // The reply as it is being written (a model's answer streaming): one bubble, replaced by the reply itself. It
  // stands after the log, not in it, so its every growth is not announced; the reply is, once, when it comes.
  function showDraft(text, html) {
    if (!text) return;
    hideTyping();
    if (!draftItem) {
      draftItem = messageItem("bot", "div");
      draftItem.classList.add("message--draft");
      els.log.after(draftItem);
    }
    const bubble = draftItem.querySelector(".bubble");
    bubble.replaceChildren();
    fillBubble(bubble, html, text);
    revealNewest();
  }

  function dropDraft() {
    if (!draftItem) return;
    draftItem.remove();
    draftItem = null;
    updateEmptyState();
  }

  function showReply(reply, { quiet = false } = {}) {
    if (!reply || !Number.isInteger(reply.id) || reply.id <= lastReplyId) return;
    lastReplyId = reply.id;
    hideTyping();
    dropDraft();
    // Made whole before it joins the log: the log announces one addition, the reply, not each of its parts.
    const item = messageItem("bot");
    item.dataset.id = String(reply.id);
    const bubble = item.querySelector(".bubble");
    if (reply.kind === "document") {
      renderDocument(bubble, reply);
    } else {
      fillBubble(bubble, reply.html, reply.text);
    }
    if (Array.isArray(reply.choices) && reply.choices.length) renderChoices(item, reply.choices);
    els.messages.append(item);
    updateEmptyState();
    if (!quiet) {
      if (!following) showNewMessage();
      revealNewest();
    }
  }

  // the rest of the page -------------------------------------------------------------------------------------------

  function updateEmptyState() {
    els.empty.hidden = els.messages.children.length > 0;
  }

  function nearEnd() {
    return els.body.scrollHeight - els.body.scrollTop - els.body.clientHeight < 120;
  }

  function scrollToEnd(force) {
    if (!force && !nearEnd()) return;
    scrolledByPage = performance.now();
    els.body.scrollTop = els.body.scrollHeight;
    following = true;
  }

  // Whether the learner follows the conversation at its end, rather than reading further up. Only their own
  // scrolling changes it: replies arriving make the list taller without the learner having moved away.
  let following = true;
  let scrolledByPage = -Infinity; // when the page itself last scrolled (its scroll event is not the learner's)
  let revealFrame = 0;
  let wordsMayChange = false; // the learner said something since the page's words were last asked for

  els.body.addEventListener(
    "scroll",
    () => {
      if (performance.now() - scrolledByPage > 200) following = nearEnd();
      if (nearEnd()) hideNewMessage();
    },
    { passive: true }
  );
  // A phone's keyboard opening makes the list shorter: keep its end in view.
  window.addEventListener("resize", () => {
    if (following) scrollToEnd(true);
  });

  /** Bring the newest reply, with its buttons, into view: once for replies that arrive together, and only while
   * the learner follows the conversation. A reply taller than the list is shown from its start. */
  function revealNewest() {
    if (wordsMayChange) {
      // The reply to something the learner said: they may have chosen another language (/language), and the
      // reply is written in the same transaction as the choice, so the page asks for its words again now.
      wordsMayChange = false;
      loadWords();
    }
    if (!following || revealFrame) return;
    revealFrame = requestAnimationFrame(() => {
      revealFrame = 0;
      const replies = els.messages.querySelectorAll(".message--bot");
      const newest = draftItem || replies[replies.length - 1];
      scrolledByPage = performance.now();
      if (newest && newest.offsetHeight > els.body.clientHeight) {
        els.body.scrollTop += newest.getBoundingClientRect().top - els.body.getBoundingClientRect().top - 12;
      } else {
        els.body.scrollTop = els.body.scrollHeight;
      }
    });
  }

  function showTyping() {
    els.typing.hidden = false;
    els.typingSaid.textContent = words.typing; // announced (the dots themselves say nothing)
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, TYPING_TIMEOUT_MS);
    scrollToEnd(true);
  }

  function hideTyping() {
    clearTimeout(typingTimer);
    els.typing.hidden = true;
    els.typingSaid.textContent = "";
  }

  /** A reply came while the learner reads further up: a button takes them down to it. */
  function showNewMessage() {
    els.newMessage.hidden = false;
  }

  function hideNewMessage() {
    els.newMessage.hidden = true;
  }

  /** `unreachable`: the message says the server could not be reached, which the stream reconnecting undoes. */
  function showError(message, { unreachable = false } = {}) {
    els.error.textContent = message;
    els.error.dataset.unreachable = String(unreachable);
    els.error.hidden = false;
  }

  function hideError({ onlyUnreachable = false } = {}) {
    if (onlyUnreachable && els.error.dataset.unreachable !== "true") return;
    els.error.hidden = true;
    els.error.textContent = "";
    delete els.error.dataset.unreachable;
  }

  /** The reply stream's state, shown as the status line (showStatus). */
  function setStatus(state) {
    stream = state;
    showStatus();
  }

  /** The status line: the stream's state, except "Offline" whenever the browser says it has no network. */
  function showStatus() {
    const state = navigator.onLine === false ? "offline" : stream;
    const said = spoken(state);
    els.status.dataset.state = state;
    // only when it changes: the status line is announced whenever its words are put in
    if (els.status.textContent !== said) els.status.textContent = said;
    els.status.title = said; // the whole line, where a phone's narrow header cuts it short
  }

  /** The network is back: the stream, if the browser gave it up, is opened again now rather than at its next try;
   * one that stayed open says the server is reachable again. */
  function cameOnline() {
    showStatus();
    if (!events && session) openEvents();
    else if (events && events.readyState === EventSource.OPEN) hideError({ onlyUnreachable: true });
  }

  function setBusy(busy) {
    els.send.disabled = busy;
    els.form.setAttribute("aria-busy", String(busy));
  }

  function resizeInput() {
    els.input.style.height = "auto";
    els.input.style.height = `${Math.min(els.input.scrollHeight, 160)}px`;
  }

  function updateCounter() {
    const length = Array.from(els.input.value).length; // code points, as the server counts
    const near = length >= COUNTER_FROM;
    els.counter.hidden = !near;
    els.counter.classList.toggle("counter--over", length > MAX_CHARS);
    els.counter.textContent = near ? `${numbers.format(length)} / ${numbers.format(MAX_CHARS)}` : "";
  }

  /** Forget this conversation and start another, once the learner has confirmed it: the session goes with it, and
   * with the session what the bot knows of them (their progress), for this browser has no other way back to it. */
  async function newChat() {
    if (!window.confirm(spoken("new_chat_confirm"))) return;
    if (events) events.close();
    events = null;
    store.remove(sentKey());
    store.remove(SESSION_KEY);
    session = null;
    forgetConversation();
    try {
      await createSession();
      openEvents();
    } catch (error) {
      showFailure(error);
    }
    els.input.focus();
  }

  /** Open the chat: its words first (the browser's language when the learner's cannot be read), so that what the
   * page says while it cannot open the chat is in the page's language; tried again until it opens. */
  async function start(attempt = 1) {
    session = store.get(SESSION_KEY);
    try {
      if (!session) await createSession();
      await loadWords();
      await loadHistory();
      openEvents();
      hideError();
    } catch (error) {
      forgetConversation();
      setStatus("offline");
      // tried again below: a server that cannot answer now is said to be so, not what it said (in English)
      const given = error instanceof ChatError && !error.unreachable;
      showError(given ? error.message : words.retrying, { unreachable: true });
      setTimeout(() => start(attempt + 1), Math.min(30000, 1000 * 2 ** attempt));
    }
  }

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendTyped();
  });
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendTyped();
    }
  });
  els.input.addEventListener("input", () => {
    resizeInput();
    updateCounter();
  });
  els.newChat.addEventListener("click", newChat);
  els.newMessage.addEventListener("click", (event) => {
    hideNewMessage();
    scrollToEnd(true);
    revealNewest(); // a reply taller than the list is shown from its start
    focusInputAfter(event);
  });
  window.addEventListener("storage", onStorage);
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("offline", showStatus);
  window.addEventListener("online", cameOnline);

  updateEmptyState();
  start();
  els.input.focus();
})();
