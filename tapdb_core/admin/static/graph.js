// Lineage graph: Cytoscape + dagre, plates drawn as their well grid.
// Every text from the database goes through Cytoscape labels (canvas) or
// textContent, never parsed as markup.
"use strict";
(function () {
  const box = document.getElementById("cy");
  if (!box) { return; }
  if (window.cytoscapeDagre) { window.cytoscape.use(window.cytoscapeDagre); }
  const isAdmin = box.dataset.admin === "true";
  const csrf = box.dataset.csrf;
  const status = document.getElementById("g-status");
  const more = document.getElementById("g-more");
  const info = document.getElementById("g-info");
  const legend = document.getElementById("g-legend");
  const layoutSelect = document.getElementById("g-layout");
  let lastData = null;
  let linkMode = false;
  let linkChild = null;

  const cy = window.cytoscape({
    container: box,
    minZoom: 0.05,
    maxZoom: 3,
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: {
        "background-color": "data(color)", "label": "data(label)", "font-size": 9,
        "text-valign": "bottom", "text-margin-y": 3, "width": 26, "height": 26, "color": "#1d2330",
        "text-max-width": 90, "text-wrap": "ellipsis" } },
      { selector: "node.well", style: { "width": 18, "height": 18, "font-size": 6, "label": "data(address)" } },
      { selector: "node[?root]", style: { "border-width": 3, "border-color": "#1d2330" } },
      { selector: "node[hidden > 0]", style: { "border-width": 2, "border-style": "dashed", "border-color": "#b42318" } },
      { selector: "node:selected", style: { "border-width": 4, "border-color": "#d92d20" } },
      { selector: ".link-child", style: { "border-width": 4, "border-color": "#f79009" } },
      { selector: "edge", style: {
        "width": 1.2, "line-color": "#98a2b3", "target-arrow-color": "#98a2b3",
        "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.7 } },
      { selector: "edge.grid-edge", style: {
        "width": 0.6, "line-color": "#d0d5dd", "target-arrow-shape": "none", "curve-style": "straight" } },
      { selector: "edge:selected", style: { "line-color": "#d92d20", "target-arrow-color": "#d92d20" } }
    ]
  });

  // for the browser tests and the console: the live graph
  window.tapdbGraph = cy;

  function setStatus(text) { status.textContent = text; }

  function gridNodes() {
    return cy.nodes().filter(function (n) { return n.data("row") !== null && n.data("row") !== undefined; });
  }

  function placeGrids() {
    // wells below their parent, by address: 8 rows x 12 columns for a 96-well plate
    const spacing = 30;
    const byParent = new Map();
    gridNodes().forEach(function (n) {
      const parent = n.incomers("node").filter(function (p) { return p.data("row") === null; }).first();
      const key = parent.nonempty() ? parent.id() : "";
      if (!byParent.has(key)) { byParent.set(key, { parent: parent, nodes: [] }); }
      byParent.get(key).nodes.push(n);
    });
    byParent.forEach(function (group) {
      let maxCol = 0;
      group.nodes.forEach(function (n) { maxCol = Math.max(maxCol, n.data("col")); });
      const origin = group.parent.nonempty() ? group.parent.position() : { x: 0, y: 0 };
      group.nodes.forEach(function (n) {
        n.position({
          x: origin.x + (n.data("col") - maxCol / 2) * spacing,
          y: origin.y + 70 + n.data("row") * spacing
        });
      });
    });
  }

  function runLayout(name) {
    if (cy.nodes().empty()) { return; }
    if (name === "dagre") {
      const grid = gridNodes();
      const rest = cy.elements().difference(grid).difference(grid.connectedEdges());
      const done = function () { placeGrids(); cy.fit(undefined, 30); box.dataset.layout = "dagre"; };
      if (rest.nonempty()) {
        const l = rest.layout({ name: "dagre", rankDir: "TB", nodeSep: 30, rankSep: 70, fit: false });
        l.one("layoutstop", done);
        l.run();
      } else { done(); }
      return;
    }
    const options = { name: name, fit: true, padding: 30, animate: false };
    if (name === "breadthfirst") { options.directed = true; options.spacingFactor = 1.2; }
    const l = cy.layout(options);
    l.one("layoutstop", function () { box.dataset.layout = name; });
    l.run();
  }

  function showLegend(map) {
    legend.textContent = "";
    Object.keys(map).sort().forEach(function (category) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.backgroundColor = map[category];
      li.appendChild(sw);
      li.appendChild(document.createTextNode(category));
      legend.appendChild(li);
    });
  }

  function showInfo(node) {
    info.textContent = "";
    const d = node.data();
    [["EUID", d.id], ["Name", d.label], ["Template", d.template], ["Status", d.status],
     ["Not shown", String(d.hidden || 0)]].forEach(function (pair) {
      const p = document.createElement("div");
      const b = document.createElement("strong");
      b.textContent = pair[0] + ": ";
      p.appendChild(b);
      p.appendChild(document.createTextNode(pair[1] || ""));
      info.appendChild(p);
    });
    const a = document.createElement("a");
    a.href = box.dataset.object + encodeURIComponent(d.id);
    a.textContent = "open";
    info.appendChild(a);
  }

  async function load(start, depth) {
    if (!start) { setStatus("Enter a start EUID."); return; }
    setStatus("Loading " + start + " …");
    box.dataset.nodes = "";
    const url = box.dataset.api + "?start=" + encodeURIComponent(start) + "&depth=" + encodeURIComponent(depth);
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    const data = await response.json();
    if (!response.ok) { setStatus("Error: " + (data.error || response.status)); return; }
    lastData = data;
    data.elements.nodes.forEach(function (n) {
      if (n.data.row !== null) { n.data.address = String.fromCharCode(65 + n.data.row) + (n.data.col + 1); }
    });
    cy.elements().remove();
    cy.add(data.elements.nodes);
    cy.add(data.elements.edges);
    gridNodes().addClass("well");
    cy.edges().filter(function (e) { return e.target().hasClass("well"); }).addClass("grid-edge");
    showLegend(data.legend);
    if (data.more_not_shown > 0) {
      more.hidden = false;
      more.textContent = data.more_not_shown + " more not shown (nodes with a dashed border have hidden neighbours; raise the depth or open them)";
    } else { more.hidden = true; more.textContent = ""; }
    runLayout(layoutSelect.value);
    box.dataset.nodes = String(cy.nodes().length);
    box.dataset.edges = String(cy.edges().length);
    setStatus(cy.nodes().length + " nodes, " + cy.edges().length + " edges");
    const params = new URLSearchParams({ start: start, depth: String(depth) });
    history.replaceState(null, "", "?" + params.toString());
  }

  function current() {
    return [document.getElementById("g-start").value.trim().toUpperCase(),
            document.getElementById("g-depth").value || "2"];
  }

  document.getElementById("graph-form").addEventListener("submit", function (e) {
    e.preventDefault();
    const c = current();
    load(c[0], c[1]);
  });
  layoutSelect.addEventListener("change", function () { runLayout(layoutSelect.value); });
  document.getElementById("g-fit").addEventListener("click", function () { cy.fit(undefined, 30); });

  function download(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  document.getElementById("g-png").addEventListener("click", function () {
    download(cy.png({ output: "blob", full: true, bg: "#ffffff" }), "tapdb-graph.png");
  });
  document.getElementById("g-json").addEventListener("click", function () {
    const payload = lastData || { elements: cy.json().elements };
    download(new Blob([JSON.stringify(payload, null, 2)], { type: "application/json" }), "tapdb-graph.json");
  });

  cy.on("tap", "node", function (evt) {
    const node = evt.target;
    showInfo(node);
    if (!isAdmin) { return; }
    const del = document.getElementById("g-delete");
    if (del) { del.disabled = false; del.dataset.euid = node.id(); }
    if (linkMode) {
      if (!linkChild) {
        linkChild = node;
        node.addClass("link-child");
        setStatus("Child " + node.id() + ": now click the parent.");
      } else if (node.id() !== linkChild.id()) {
        openLinkDialog(node, linkChild);
      }
    }
  });
  cy.on("dbltap", "node", function (evt) {
    // two quick taps while linking pick two nodes: they are not a double-click
    if (linkMode) { return; }
    window.location.href = box.dataset.object + encodeURIComponent(evt.target.id());
  });

  async function send(method, url, body) {
    const response = await fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    });
    const data = await response.json().catch(function () { return {}; });
    return { ok: response.ok, status: response.status, data: data };
  }

  function endLinkMode() {
    linkMode = false;
    if (linkChild) { linkChild.removeClass("link-child"); }
    linkChild = null;
  }

  function openLinkDialog(parent, child) {
    const dialog = document.getElementById("g-link-dialog");
    document.getElementById("g-link-parent").textContent = parent.id();
    document.getElementById("g-link-child").textContent = child.id();
    dialog.dataset.parent = parent.id();
    dialog.dataset.child = child.id();
    dialog.showModal();
  }

  if (isAdmin) {
    document.getElementById("g-link-mode").addEventListener("click", function () {
      endLinkMode();
      linkMode = true;
      setStatus("Link mode: click the child, then the parent.");
    });
    const dialog = document.getElementById("g-link-dialog");
    dialog.addEventListener("close", async function () {
      const parent = dialog.dataset.parent, child = dialog.dataset.child;
      endLinkMode();
      if (dialog.returnValue !== "ok") { setStatus("Link cancelled."); return; }
      const r = await send("POST", box.dataset.linkApi, {
        parent_euid: parent, child_euid: child,
        relationship_type: document.getElementById("g-link-type").value
      });
      if (!r.ok) { setStatus("Link refused: " + (r.data.error || r.status)); return; }
      setStatus("Linked " + parent + " → " + child + " (" + r.data.euid + ")");
      const c = current();
      await load(c[0], c[1]);
      setStatus("Linked " + parent + " → " + child + " (" + r.data.euid + ")");
    });
    document.getElementById("g-delete").addEventListener("click", async function () {
      const euid = this.dataset.euid;
      if (!euid || !window.confirm("Soft-delete " + euid + "?")) { return; }
      const r = await send("DELETE", box.dataset.deleteApi + encodeURIComponent(euid));
      if (!r.ok) { setStatus("Delete refused: " + (r.data.error || r.status)); return; }
      cy.getElementById(euid).remove();
      box.dataset.nodes = String(cy.nodes().length);
      setStatus("Soft-deleted " + euid);
    });
  }

  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { endLinkMode(); setStatus(""); } });
  if (box.dataset.start) { load(box.dataset.start, box.dataset.depth || "2"); }
})();
