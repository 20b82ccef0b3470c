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
