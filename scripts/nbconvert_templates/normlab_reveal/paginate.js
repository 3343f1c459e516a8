// A slide taller than the deck's height continues on new slides below it (a vertical stack in reveal.js).
// It runs once, before reveal.js starts, when the math is typeset, every widget view is drawn and every image
// decoded (those set the heights); the body then gets the class normlab-paginated.
// A slide is cut between its cells; a cell too tall alone is cut between its parts (code, then output;
// a paragraph, a list item; a block of code or printed text, between lines); a picture or a table stays whole.
var NORMLAB_WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]';
// Boxes that may be cut between their children: any div or list that holds no widget and is not a formula.
// A widget, a picture or a table is never cut; a pre (code or printed text) is cut between its lines.
function normlabCuttable(node) {
    return node.matches('div, ul, ol') && !node.matches('.jupyter-widgets, [class*="MathJax"]')
        && !node.querySelector(NORMLAB_WIDGET_VIEW);
}

function normlabSettled() {
    var mathDone = !window.MathJax || !MathJax.Hub
        || (MathJax.isReady && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running);
    var viewsDrawn = Array.prototype.every.call(document.querySelectorAll(NORMLAB_WIDGET_VIEW),
        function(view) { return view.parentElement.querySelector('.jupyter-widgets img'); });
    var imagesDecoded = Array.prototype.every.call(document.images, function(image) { return image.complete; });
    return mathDone && viewsDrawn && imagesDecoded;
}

// The children of `node` that show something (text, a picture, a widget); an empty box is never cut off alone.
function normlabContent(node) {
    return Array.prototype.filter.call(node.children, function(child) {
        return !child.matches('aside.notes, script, style') && child.getClientRects().length > 0
            && (child.textContent.trim() || child.matches('img, svg, canvas') || child.querySelector('img, svg, canvas'));
    });
}

// A new section after `section` holding empty copies of the boxes from `section` down to `node`: the copy of `node`.
function normlabContinue(section, node) {
    var path = [];
    for (var up = node; up !== section; up = up.parentElement) path.unshift(up);
    var next = section.cloneNode(false), into = next;
    path.forEach(function(box) {
        var copy = box.cloneNode(false);
        copy.removeAttribute('id');
        into.appendChild(copy);
        into = copy;
    });
    section.after(next);
    return into;
}

// Cut a pre after its last line that ends above `limit` (in the page's pixels); false if no line does.
function normlabCutPre(section, pre, limit) {
    var walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT), range = document.createRange();
    var cut = null, last = pre.textContent.replace(/\s+$/, '').length, seen = 0;
    range.setStart(pre, 0);
    for (var text = walker.nextNode(); text; text = walker.nextNode()) {
        for (var i = text.data.indexOf('\n'); i >= 0; i = text.data.indexOf('\n', i + 1)) {
            if (seen + i + 1 >= last) break;
            range.setEnd(text, i);
            if (range.getBoundingClientRect().bottom > limit) return cut ? normlabMoveAfter(section, pre, cut) : false;
            cut = [text, i + 1];
        }
        seen += text.data.length;
    }
    return cut ? normlabMoveAfter(section, pre, cut) : false;
}

function normlabMoveAfter(section, pre, cut) {
    var range = document.createRange();
    range.setStart(cut[0], cut[1]);
    range.setEndAfter(pre.lastChild);
    normlabContinue(section, pre).appendChild(range.extractContents());
    return true;
}

// Move the part of `section` below its height onto a new section placed after it; false when nothing can be cut.
function normlabCutOnce(section, height, scale) {
    var node = section, kids = normlabContent(node);
    while (kids.length === 1 && normlabCuttable(kids[0])) {
        node = kids[0];
        kids = normlabContent(node);
    }
    var top = section.getBoundingClientRect().top;
    if (kids.length === 1 && kids[0].tagName === 'PRE') {
        var padding = parseFloat(getComputedStyle(kids[0]).paddingBottom) + 8;
        return normlabCutPre(section, kids[0], top + (height - padding) * scale);
    }
    if (kids.length < 2) return false;
    var cut = kids.length - 1;
    for (var i = 1; i < kids.length; i++) {
        if ((kids[i].getBoundingClientRect().bottom - top) / scale > height) { cut = i; break; }
    }
    var into = normlabContinue(section, node);
    if (node.tagName === 'OL') into.start = (node.start || 1) + cut;
    kids.slice(cut).forEach(function(kid) { into.appendChild(kid); });
    return true;
}

// Cut every slide taller than `height` (the slides box is laid out at the deck's size, unscaled, meanwhile).
function normlabPaginate(height) {
    var reveal = document.querySelector('.reveal'), slidesBox = reveal.querySelector('.slides');
    var scale = slidesBox.getBoundingClientRect().width / slidesBox.offsetWidth;
    var queue = Array.prototype.slice.call(reveal.querySelectorAll('.slides > section > section'));
    var added = 0;
    while (queue.length) {
        var section = queue.shift(), made = [];
        while (section.scrollHeight > height + 1 && made.length < 40 && normlabCutOnce(section, height, scale)) {
            made.unshift(section.nextElementSibling);
        }
        added += made.length;
        queue = made.concat(queue);
    }
    document.body.dataset.normlabSlidesAdded = added;
}

// Lay every slide out (unseen) until the page has settled, cut the tall ones, then call `start` (which starts
// reveal.js): the slides, and so the slide numbers and the addresses #/h/v, are final before reveal.js reads
// them. The speaker view's previews, which load the deck again, then agree with it from their first slide.
function normlabPaginateThen(height, start) {
    var reveal = document.querySelector('.reveal'), started = Date.now(), calm = 0;
    reveal.classList.add('normlab-measuring');
    var poll = setInterval(function() {
        calm = normlabSettled() ? calm + 1 : 0;
        if (calm >= 2 || Date.now() - started > 30000) {
            clearInterval(poll);
            normlabPaginate(height);
            reveal.classList.remove('normlab-measuring');
            start();
        }
    }, 100);
}
