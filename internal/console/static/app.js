// posgate console: live pending list (server-sent events) and decisions without a reload.
// No framework; rows are built with DOM nodes and textContent, never parsed from markup.
"use strict";

(function () {
  // Forms that ask before acting (Revoke).
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) {
      ev.preventDefault();
    }
  });

  var table = document.getElementById("pending");
  if (!table) {
    return;
  }
  var tbody = table.tBodies[0];
  var empty = document.getElementById("empty");
  var live = document.getElementById("live");
  var statusEl = document.getElementById("status");
  var more = document.getElementById("more");
  var shownEl = document.getElementById("shown");
  var totalEl = document.getElementById("total");

  function say(text, isError) {
    statusEl.textContent = text;
    statusEl.className = "alert " + (isError ? "error" : "notice");
    statusEl.hidden = false;
  }

  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) {
      return "";
    }
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function cell(text, cls, placeholder) {
    var td = document.createElement("td");
    if (cls) {
      td.className = cls;
    }
    if (text) {
      td.textContent = text;
    } else if (placeholder) {
      var em = document.createElement("em");
      em.textContent = placeholder;
      td.appendChild(em);
    }
    return td;
  }

  function decisionForm(id, action, label, cls) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/admin/devices/" + encodeURIComponent(id) + "/" + action;
    var b = document.createElement("button");
    b.type = "submit";
    b.className = cls;
    b.textContent = label;
    form.appendChild(b);
    return form;
  }

  function buildRow(d) {
    var tr = document.createElement("tr");
    tr.dataset.id = d.id;
    tr.appendChild(cell(d.label, "label", "unnamed"));
    tr.appendChild(cell(d.device_id, "mono", "fingerprint"));
    tr.appendChild(cell(d.address, "mono"));
    tr.appendChild(cell(d.user_agent, "ua"));
    tr.appendChild(cell(when(d.first_seen), "when"));
    var st = document.createElement("td");
    var badge = document.createElement("span");
    badge.className = "badge " + (d.waiting ? "waiting" : "stale");
    badge.textContent = d.waiting ? "waiting" : "gave up";
    st.appendChild(badge);
    tr.appendChild(st);
    var actions = document.createElement("td");
    actions.className = "actions";
    actions.appendChild(decisionForm(d.id, "approve", "Approve", "approve"));
    actions.appendChild(decisionForm(d.id, "decline", "Decline", "decline"));
    tr.appendChild(actions);
    return tr;
  }

  // render makes the table show exactly list, in order, keeping rows that did not change (and
  // rows whose decision is in flight) so a button is never swapped under a pointer.
  function render(list) {
    var existing = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      existing[tr.dataset.id] = tr;
    });
    var keep = {};
    list.forEach(function (d, i) {
      var sig = JSON.stringify([d.label, d.device_id, d.address, d.user_agent, d.first_seen, d.waiting]);
      var tr = existing[d.id];
      if (!tr || (tr.dataset.sig !== sig && !tr.dataset.busy)) {
        var fresh = buildRow(d);
        if (tr) {
          tbody.replaceChild(fresh, tr);
        }
        tr = fresh;
      }
      tr.dataset.sig = sig;
      keep[d.id] = true;
      if (tbody.rows[i] !== tr) {
        tbody.insertBefore(tr, tbody.rows[i] || null);
      }
    });
    Object.keys(existing).forEach(function (id) {
      if (!keep[id] && existing[id].parentNode === tbody) {
        tbody.removeChild(existing[id]);
      }
    });
    empty.hidden = tbody.rows.length > 0;
  }

  // Decisions go through fetch so the page stays put; the server answers JSON.
  tbody.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target;
    var row = form.closest("tr");
    var buttons = row.querySelectorAll("button");
    row.dataset.busy = "1";
    buttons.forEach(function (b) { b.disabled = true; });
    var label = row.cells[0].textContent;
    fetch(form.action, { method: "POST", headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (res) {
        return res.json().then(function (body) { return { ok: res.ok, status: res.status, body: body }; });
      })
      .then(function (r) {
        if (r.ok) {
          if (row.parentNode === tbody) {
            tbody.removeChild(row);
          }
          empty.hidden = tbody.rows.length > 0;
          say(label + ": " + r.body.state, false);
          return;
        }
        if (r.status === 401) {
          window.location.href = "/admin/login";
          return;
        }
        delete row.dataset.busy;
        buttons.forEach(function (b) { b.disabled = false; });
        say(label + ": not done — " + (r.body.error || ("HTTP " + r.status)), true);
      })
      .catch(function () {
        delete row.dataset.busy;
        buttons.forEach(function (b) { b.disabled = false; });
        say(label + ": not done — the server could not be reached", true);
      });
  });

  var es = new EventSource("/admin/pending/events");
  // data: {"devices": [...], "total": n} — the most recent pending requests (at most 200),
  // newest first, and how many are pending in all.
  es.addEventListener("pending", function (ev) {
    live.dataset.state = "live";
    live.textContent = "live";
    var msg = JSON.parse(ev.data);
    render(msg.devices || []);
    var shown = (msg.devices || []).length;
    shownEl.textContent = String(shown);
    totalEl.textContent = String(msg.total);
    more.hidden = !(msg.total > shown);
  });
  es.addEventListener("signout", function () {
    es.close();
    window.location.href = "/admin/login";
  });
  es.addEventListener("error", function () {
    live.dataset.state = "lost";
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream (the session ended): sign in again.
      live.textContent = "signed out";
      window.location.href = "/admin/login";
      return;
    }
    live.textContent = "reconnecting…";
  });
})();
