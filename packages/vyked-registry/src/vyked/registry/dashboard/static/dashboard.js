// The registry dashboard: follows api/events (server-sent events) and draws what it says.
// No build step and nothing from outside: plain DOM, the graph as inline SVG.
// Every text from the registry goes through textContent: service names are whatever hosts register.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["active", "pending", "draining", "down"];
  const model = { overview: null, receivedAt: 0, heartbeats: null, heartbeatsAt: 0 };
  let source = null;
  let retryDelay = 500;

  // -- the event stream ------------------------------------------------------------------------

  function connect() {
    source = new EventSource("api/events");
    source.addEventListener("snapshot", (event) => {
      // sent at once on every (re)connection, then after every change: always the whole state
      model.overview = JSON.parse(event.data);
      model.receivedAt = performance.now();
      model.heartbeats = null;
      retryDelay = 500;
      setConnection("live");
      render();
    });
    source.addEventListener("heartbeats", (event) => {
      model.heartbeats = JSON.parse(event.data).heartbeats;
      model.heartbeatsAt = performance.now();
      renderTimes();
    });
    source.addEventListener("error", () => {
      setConnection("reconnecting");
      // EventSource retries a lost connection by itself; it gives up only on an HTTP error
      // (a proxy's 502 while the registry restarts), so then start over, with backoff.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
      }
    });
  }

  function setConnection(state) {
    const badge = document.getElementById("connection");
    badge.className = "connection " + state;
    badge.dataset.connection = state;
    if (state === "live") {
      badge.textContent = "live";
    } else if (state === "reconnecting") {
      const since = model.overview ? " · showing the state of " + clock(model.overview.time) : "";
      badge.textContent = "registry unreachable, reconnecting…" + since;
    } else {
      badge.textContent = "connecting…";
    }
    document.body.classList.toggle("stale", state !== "live" && model.overview !== null);
  }

  // -- rendering ---------------------------------------------------------------------------------

  function render() {
    const overview = model.overview;
    document.getElementById("registry").textContent = overview.registry + " at " + overview.address;
    renderSummary(overview);
    renderGraph(overview.graph);
    renderTable(overview.services);
    renderTimes();
  }

  function renderSummary(overview) {
    const counts = { active: 0, pending: 0, draining: 0, down: 0 };
    let total = 0;
    let services = 0;
    for (const service of overview.services) {
      if (service.instances.length) services += 1;
      for (const state of STATES) {
        counts[state] += service.counts[state] || 0;
        total += service.counts[state] || 0;
      }
    }
    const parts = STATES.map((state) => counts[state] + " " + state);
    document.getElementById("summary").textContent =
      services + " service(s), " + total + " instance(s): " + parts.join(", ") +
      " · heartbeat every " + overview.heartbeat_interval + " s, dropped after " + overview.heartbeat_timeout + " s";
  }

  function renderTable(services) {
    const body = document.querySelector("#instances tbody");
    const rows = [];
    for (const service of services) {
      service.instances.forEach((view, index) => {
        const i = view.instance;
        const row = document.createElement("tr");
        row.dataset.node = i.node_id;
        row.dataset.service = i.service;
        row.dataset.state = view.state;
        row.className = view.state + (index === 0 ? " service-start" : "");
        cell(row, index === 0 ? i.service : "", "service");
        cell(row, i.version, "version");
        cell(row, i.kind + (i.tls ? " (TLS)" : ""), "kind");
        cell(row, i.host + ":" + i.port, "address");
        cell(row, i.node_id.slice(0, 12), "node").title = i.node_id;
        const state = cell(row, "", "state-cell");
        const label = document.createElement("span");
        label.className = "state " + view.state;
        label.textContent = view.state;
        state.appendChild(label);
        if (view.waiting_for.length) {
          const waiting = document.createElement("span");
          waiting.className = "waiting";
          waiting.textContent = " waiting for " + view.waiting_for.join(", ");
          state.appendChild(waiting);
        }
        cell(row, "", "uptime");
        cell(row, "", "downtime");
        cell(row, "", "heartbeat");
        cell(row, view.registry, "registry");
        row._view = view;
        rows.push(row);
      });
    }
    if (!rows.length) {
      const row = document.createElement("tr");
      const empty = cell(row, "No instance has registered yet.", "empty");
      empty.colSpan = 10;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  // Uptimes and heartbeat ages move on between events: count from when each was received.
  function renderTimes() {
    if (!model.overview) return;
    const live = document.body.classList.contains("stale") ? 0 : 1;
    const sinceSnapshot = ((performance.now() - model.receivedAt) / 1000) * live;
    const sinceBeat = ((performance.now() - model.heartbeatsAt) / 1000) * live;
    const timeout = model.overview.heartbeat_timeout;
    for (const row of document.querySelectorAll("#instances tbody tr")) {
      const view = row._view;
      if (!view) continue;
      const down = view.state === "down";
      row.querySelector(".uptime").textContent = down ? "-" : duration(view.uptime + sinceSnapshot);
      row.querySelector(".downtime").textContent = duration(view.downtime + (down ? sinceSnapshot : 0));
      const beat = row.querySelector(".heartbeat");
      let age = view.last_heartbeat === null ? null : view.last_heartbeat + sinceSnapshot;
      if (model.heartbeats && view.instance.node_id in model.heartbeats) {
        age = model.heartbeats[view.instance.node_id] + sinceBeat;
      }
      if (down || age === null) {
        beat.textContent = "-";
        beat.classList.remove("late");
      } else {
        beat.textContent = age.toFixed(1) + " s ago";
        beat.classList.toggle("late", age > timeout / 2);
      }
    }
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m" + String(seconds % 60).padStart(2, "0") + "s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h" + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(seconds / 86400) + "d" + String(Math.floor((seconds % 86400) / 3600)).padStart(2, "0") + "h";
  }

  function clock(unixSeconds) {
    return new Date(unixSeconds * 1000).toLocaleTimeString();
  }

  // -- the dependency graph ------------------------------------------------------------------------
  // Layered: a service sits one column left of the deepest service it calls, so services that
  // call nothing are on the right and each caller is left of what it calls.

  const NODE_HEIGHT = 46, ROW_GAP = 18, COLUMN_GAP = 110, MARGIN = 12;

  function renderGraph(graph) {
    const box = document.getElementById("graph");
    if (!graph.nodes.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = "No services yet.";
      box.replaceChildren(empty);
      return;
    }
    const calls = new Map(graph.nodes.map((n) => [n.service, []]));
    for (const edge of graph.edges) calls.get(edge.source).push(edge.target);
    const depth = new Map();
    const visiting = new Set();
    function depthOf(service) {
      if (depth.has(service)) return depth.get(service);
      if (visiting.has(service)) return 0; // a cycle: cut it here
      visiting.add(service);
      let d = 0;
      for (const target of calls.get(service) || []) d = Math.max(d, depthOf(target) + 1);
      visiting.delete(service);
      depth.set(service, d);
      return d;
    }
    graph.nodes.forEach((n) => depthOf(n.service));
    const deepest = Math.max(...depth.values());
    const columns = [];
    for (const node of graph.nodes) {
      const column = deepest - depth.get(node.service);
      (columns[column] = columns[column] || []).push(node);
    }
    // order each column by where its neighbours already are, to uncross edges
    const position = new Map();
    const layout = new Map();
    let x = MARGIN;
    let height = 0;
    for (let c = 0; c < columns.length; c++) {
      const column = columns[c] || [];
      column.sort((a, b) => barycenter(a) - barycenter(b) || a.service.localeCompare(b.service));
      const width = Math.max(...column.map((n) => nodeWidth(n)));
      column.forEach((node, row) => {
        const y = MARGIN + row * (NODE_HEIGHT + ROW_GAP);
        layout.set(node.service, { x: x, y: y, width: width, node: node });
        position.set(node.service, row);
        height = Math.max(height, y + NODE_HEIGHT + MARGIN);
      });
      x += width + COLUMN_GAP;
    }
    function barycenter(node) {
      const callers = graph.edges.filter((e) => e.target === node.service && position.has(e.source));
      if (!callers.length) return Number.MAX_SAFE_INTEGER / 2;
      return callers.reduce((sum, e) => sum + position.get(e.source), 0) / callers.length;
    }

    const svg = element("svg", { width: x - COLUMN_GAP + MARGIN, height: height, role: "img" });
    svg.setAttribute("aria-label", "dependency graph");
    const defs = element("defs", {}, svg);
    for (const id of ["arrow", "arrow-unsatisfied"]) {
      const marker = element("marker", {
        id: id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
      }, defs);
      element("path", { d: "M 0 0 L 10 5 L 0 10 z" }, marker);
    }
    for (const edge of graph.edges) {
      const from = layout.get(edge.source), to = layout.get(edge.target);
      const group = element("g", { class: "edge " + (edge.satisfied ? "satisfied" : "unsatisfied") }, svg);
      group.dataset.source = edge.source;
      group.dataset.target = edge.target;
      let d, labelX, labelY;
      const y1 = from.y + NODE_HEIGHT / 2, y2 = to.y + NODE_HEIGHT / 2;
      if (to.x > from.x) {
        const x1 = from.x + from.width, x2 = to.x;
        const bend = (x2 - x1) / 2;
        d = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
        labelX = (x1 + x2) / 2;
        labelY = (y1 + y2) / 2 - 4;
      } else { // same column or backwards (a cycle): loop around on the right
        const x1 = from.x + from.width, x2 = to.x + to.width;
        const out = Math.max(x1, x2) + 40;
        d = `M ${x1} ${y1} C ${out} ${y1}, ${out} ${y2}, ${x2} ${y2}`;
        labelX = out - 10;
        labelY = (y1 + y2) / 2;
      }
      element("path", { d: d, "marker-end": `url(#${edge.satisfied ? "arrow" : "arrow-unsatisfied"})` }, group);
      text("v" + edge.version, { x: labelX, y: labelY, "text-anchor": "middle" }, group);
    }
    for (const { x: nx, y: ny, width, node } of layout.values()) {
      const group = element("g", { class: "node " + node.state, transform: `translate(${nx},${ny})` }, svg);
      group.dataset.service = node.service;
      group.dataset.state = node.state;
      element("rect", { width: width, height: NODE_HEIGHT, rx: 6, ry: 6 }, group);
      text(node.service, { x: 10, y: 19, class: "name" }, group);
      text(nodeDetail(node), { x: 10, y: 36, class: "detail" }, group);
      const title = element("title", {}, group);
      title.textContent = node.service + ": " + node.state;
    }
    box.replaceChildren(svg);
  }

  function nodeDetail(node) {
    if (node.state === "missing") return "no instance";
    const parts = STATES.filter((s) => node.counts[s]).map((s) => node.counts[s] + " " + s);
    return parts.join(" · ");
  }

  const measuring = document.createElement("canvas").getContext("2d");

  function textWidth(content, font) {
    measuring.font = font + " " + getComputedStyle(document.body).fontFamily;
    return measuring.measureText(content).width;
  }

  function nodeWidth(node) {
    const longest = Math.max(textWidth(node.service, "600 13px"), textWidth(nodeDetail(node), "11px"));
    return Math.max(120, Math.ceil(longest) + 24);
  }

  function element(name, attributes, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
    if (parent) parent.appendChild(el);
    return el;
  }

  function text(content, attributes, parent) {
    const el = element("text", attributes, parent);
    el.textContent = content;
    return el;
  }

  setInterval(renderTimes, 1000);
  connect();
})();
