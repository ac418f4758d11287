// The τ scrub: while τ is dragged, the compare slider's right image becomes the nearest preloaded τ
// frame at once (no server round trip); on release the server's exact render replaces it.
// Gradio runs this with `element` bound to the #tau-frames component (js_on_load).
if (!window.__dpScrub) {
  window.__dpScrub = true;
  const show = (value) => {
    const frames = [...document.querySelectorAll('#tau-frames img[data-tau]')];
    const after = document.querySelectorAll('#compare img');
    if (!frames.length || !after.length) return;
    let best = frames[0];
    for (const f of frames) if (Math.abs(f.dataset.tau - value) < Math.abs(best.dataset.tau - value)) best = f;
    const target = after[after.length - 1];
    if (target.getAttribute('src') !== best.src) { target.src = best.src; target.dataset.scrubTau = best.dataset.tau; }
  };
  // Decode each frame as it arrives, so that showing it is a swap, not a PNG decode.
  new MutationObserver(() => document.querySelectorAll('#tau-frames img[data-tau]').forEach(
    (img) => img.decode().catch(() => null))).observe(element, {childList: true, subtree: true});
  document.addEventListener('input', (e) => {
    if (e.target.closest && e.target.closest('#tau')) show(parseFloat(e.target.value));
  }, true);
}
