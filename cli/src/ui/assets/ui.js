// ordo ui: live updates. Pages work without this script; with it, a running job's page (and a
// running task's) follows /events?job=ID[&task=N] (server-sent events, JSON per message) and
// rewrites the state cells, counts and log in place; the jobs list follows /events/jobs and
// rewrites its rows. It only sets textContent, numbers and class names the server chose:
// never markup.
(function () {
  'use strict';
  var body = document.body;
  if (!window.EventSource) { return; }

  function text(el, value) { if (el && el.textContent !== String(value)) { el.textContent = String(value); } }

  // A state chip: <span class="st o-X" data-f=...><span class="mark m-Y">✓</span><i>name</i></span>
  function chip(el, m) {
    if (!el) { return; }
    el.className = 'st ' + m['class'];
    var mark = el.querySelector('.mark');
    if (mark) { mark.className = 'mark ' + m.markClass; text(mark, m.mark); }
    text(el.querySelector('i'), m.state);
  }

  function problems(source) {
    source.addEventListener('problem', function (e) {
      var live = document.querySelector('[data-f="live"]');
      try { if (live) { live.title = JSON.parse(e.data).message; } } catch (err) { /* ignore */ }
    });
  }

  if (body.getAttribute('data-live-jobs')) {
    // The page's own filter; paused while the tab is hidden. Jobs created after the newest
    // the page was rendered with are new.
    var newest = Number(body.getAttribute('data-live-jobs')) || 0;
    var fresh = new Set();
    var list = null;
    var follow = function () {
      list = new EventSource('/events/jobs' + location.search);
      list.onmessage = onJobs;
      problems(list);
    };
    document.addEventListener('visibilitychange', function () {
      if (document.hidden && list) { list.close(); list = null; }
      else if (!document.hidden && !list) { follow(); }
    });
    var onJobs = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      (m.jobs || []).forEach(function (j) {
        if (j.created > newest) { fresh.add(j.id); }
        var rows = document.querySelectorAll('tr[data-job]');
        for (var k = 0; k < rows.length; k++) {
          var row = rows[k];
          if (row.getAttribute('data-job') !== j.id) { continue; }
          chip(row.querySelector('[data-f="job-state"]'), j);
          var p = row.querySelector('[data-f="progress"]');
          if (p) { p.max = Math.max(j.total, 1); p.value = j.succeeded; }
          text(row.querySelector('[data-f="count"]'), j.count);
          text(row.querySelector('[data-f="running"]'), j.runningNote);
          text(row.querySelector('[data-f="failed"]'), j.failed);
          text(row.querySelector('[data-f="duration"]'), j.duration);
          text(row.querySelector('[data-f="cost"]'), j.cost);
        }
      });
      var note = document.querySelector('[data-f="new-jobs"]');
      if (note && fresh.size > 0) {
        note.hidden = false;
        text(note.querySelector('a'), fresh.size + (fresh.size === 1 ? ' new job' : ' new jobs') + ' \u2014 reload to see');
      }
    };
    if (!document.hidden) { follow(); }
    return;
  }

  var job = body.getAttribute('data-live-job');
  if (!job) { return; }
  var task = body.getAttribute('data-live-task');
  var url = '/events?job=' + encodeURIComponent(job) + (task ? '&task=' + encodeURIComponent(task) : '');
  var source = new EventSource(url);

  function applyTask(t) {
    var nodes = document.querySelectorAll('[data-task="' + t.i + '"]');
    for (var k = 0; k < nodes.length; k++) {
      var n = nodes[k];
      chip(n.querySelector('[data-f="state"]'), t);
      text(n.querySelector('[data-f="attempts"]'), t.attempts);
      text(n.querySelector('[data-f="worker"]'), t.worker);
      text(n.querySelector('[data-f="duration"]'), t.duration);
      text(n.querySelector('[data-f="exit"]'), t.exit);
      var box = n.querySelector('[data-f="node"]');
      if (box) {
        var crit = box.classList.contains('crit') ? ' crit' : '';
        box.setAttribute('class', 'box ' + t['class'] + crit);
      }
    }
  }

  function applyJob(j) {
    chip(document.querySelector('[data-f="job-state"]'), j);
    text(document.querySelector('[data-f="succeeded"]'), j.succeeded);
    text(document.querySelector('[data-f="failed"]'), j.failed);
    text(document.querySelector('[data-f="running"]'), j.running);
    var p = document.querySelector('[data-f="progress"]');
    if (p) { p.max = Math.max(j.total, 1); p.value = j.succeeded; }
  }

  function applyLog(log) {
    var pre = document.querySelector('[data-f="log"]');
    if (!pre || !log) { return; }
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (typeof log.reset === 'string') { pre.textContent = log.reset; }
    if (typeof log.append === 'string') { pre.textContent += log.append; }
    text(document.querySelector('[data-f="log-note"]'), 'Following the task\u2019s output live.');
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
  }

  source.onmessage = function (e) {
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.job) { applyJob(m.job); }
    (m.tasks || []).forEach(applyTask);
    applyLog(m.log);
  };
  source.addEventListener('end', function (e) {
    source.close();
    var state = 'ended';
    try { state = JSON.parse(e.data).state; } catch (err) { /* keep 'ended' */ }
    var live = document.querySelector('[data-f="live"]');
    if (live) {
      live.className = 'live ended';
      live.textContent = '';
      var dot = document.createElement('span');
      dot.className = 'dot';
      live.appendChild(dot);
      live.appendChild(document.createTextNode('the job is ' + state + ' \u2014 '));
      var a = document.createElement('a');
      a.href = location.pathname;
      a.textContent = 'reload for its timeline and actions';
      live.appendChild(a);
    }
    body.setAttribute('data-live-ended', state);
  });
  problems(source);
})();
