// leadbridge admin: copy buttons, "select all" checkboxes, table labels for phones. No framework, no build step.
(function () {
  "use strict";

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected for a manual copy */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-list]");
    if (!button) { return; }
    var text;
    if (button.dataset.copy) {
      text = document.getElementById(button.dataset.copy).textContent;
    } else {
      var items = document.querySelectorAll("#" + button.dataset.copyList + " li");
      text = Array.prototype.map.call(items, function (li, i) { return (i + 1) + ". " + li.textContent; }).join("\n");
    }
    copyText(text.trim(), button);
  });

  // On a phone a table's rows show as blocks of "label: value" lines (table.stack in admin.css). The labels are
  // the table's own column headings, so no page has to repeat them on every cell; without this script the
  // tables keep their columns and scroll sideways inside their own box.
  function labelCells(table) {
    if (!table.tHead || !table.tHead.rows.length || table.classList.contains("compact")) { return; }
    var labels = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.textContent.trim(); });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        Array.prototype.forEach.call(row.cells, function (cell, i) {
          if (labels[i] && cell.colSpan === 1 && !cell.hasAttribute("data-label")) {
            cell.setAttribute("data-label", labels[i]);
          }
        });
      });
    });
    table.classList.add("stack");
  }
  document.querySelectorAll("main table").forEach(labelCells);

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.classList || !box.classList.contains("select-all")) { return; }
    var form = box.closest("form");
    form.querySelectorAll('input[type="checkbox"][name="' + box.dataset.target + '"]').forEach(function (other) {
      other.checked = box.checked;
    });
  });
})();

// The rule editor: an action row shows only its kind's parameters; rows are added and removed in place; the
// dry run posts the form's (unsaved) settings and says how many leads would have fired the rule.
(function () {
  "use strict";

  function showParams(row) {
    var kind = row.querySelector('select[name="action_kind"]').value;
    row.querySelectorAll(".action-param").forEach(function (label) {
      label.hidden = label.dataset.kinds.split(" ").indexOf(kind) < 0;
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "action_kind") { showParams(event.target.closest(".action-row")); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest(".add-action, .remove-action, .dry-run-button");
    if (!button) { return; }
    if (button.classList.contains("remove-action")) {
      var row = button.closest(".action-row");
      if (row.parentNode.querySelectorAll(".action-row").length > 1) {
        row.parentNode.removeChild(row);
      } else {
        row.querySelector('select[name="action_kind"]').value = "";
        showParams(row);
      }
    } else if (button.classList.contains("add-action")) {
      var rows = button.parentNode.querySelectorAll(".action-row");
      var copy = rows[rows.length - 1].cloneNode(true);
      copy.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      copy.querySelectorAll("select").forEach(function (select) { select.value = ""; });
      showParams(copy);
      button.parentNode.insertBefore(copy, button);
    } else {
      var form = button.closest("form");
      var out = button.parentNode.querySelector(".dry-run-result");
      var data = new FormData(form);
      data.set("rule_id", button.dataset.rule || "");
      out.textContent = "Counting…";
      fetch(button.dataset.url, {method: "POST", body: data, credentials: "same-origin"})
        .then(function (response) { return response.json(); })
        .then(function (body) {
          out.textContent = body.message ? body.message
            : body.leads + " lead(s) would have fired it in the last " + body.days + " days (" + body.crossings +
              " time(s), counting the cooldown)";
        }, function () { out.textContent = "The dry run could not be run; try again."; });
    }
  });
})();
