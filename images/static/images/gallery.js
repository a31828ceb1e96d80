// The gallery: pages through GET /images with the form's filters and shows thumbnails.
// With auth on, every request carries the token kept in sessionStorage; pictures are then
// fetched with it and shown from blob URLs (an <img src> cannot send a header).
"use strict";

(() => {
  const TOKEN_KEY = "imagestore.token";
  const body = document.body;
  const authEnabled = body.dataset.auth === "on";
  const thumbnailSize = body.dataset.thumbnailSize;
  const detailSize = body.dataset.detailSize;

  const form = document.getElementById("filters");
  const grid = document.getElementById("grid");
  const status = document.getElementById("status");
  const previousButton = document.getElementById("previous");
  const nextButton = document.getElementById("next");
  const dialog = document.getElementById("detail");
  const detailImage = document.getElementById("detail-image");
  const detailTitle = document.getElementById("detail-title");
  const detailJson = document.getElementById("detail-json");
  const downloadLink = document.getElementById("download");

  const state = { items: [], total: 0, skip: 0, limit: 24, current: -1, blobs: [] };

  // --- token -----------------------------------------------------------------------------
  const token = () => (authEnabled ? sessionStorage.getItem(TOKEN_KEY) || "" : "");
  const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

  function setUpTokenBox() {
    const tokenForm = document.getElementById("token-form");
    if (!tokenForm) return;
    const input = document.getElementById("token");
    input.value = token();
    tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      load();
    });
    document.getElementById("token-clear").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      input.value = "";
      load();
    });
  }

  // --- the query -------------------------------------------------------------------------
  function formValues() {
    const values = new FormData(form);
    state.limit = Number(values.get("limit")) || 24;
    state.skip = Math.max(0, Number(values.get("skip")) || 0);
    return values;
  }

  function apiParameters(values) {
    const params = new URLSearchParams();
    for (const pair of String(values.get("match") || "").split(",")) {
      const at = pair.indexOf("=");
      if (at > 0) params.append(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
    if (values.get("regex")) params.set("regex", "true");
    for (const name of ["file", "from", "to", "filter", "sort"]) {
      const value = String(values.get(name) || "").trim();
      if (value) params.set(name, value);
    }
    if (params.has("sort")) params.set("order", values.get("order") || "1");
    params.set("skip", String(state.skip));
    params.set("limit", String(state.limit));
    return params;
  }

  function pageAddress(values) {
    const kept = new URLSearchParams();
    for (const [name, value] of values.entries()) {
      if (String(value) !== "") kept.set(name, String(value));
    }
    kept.set("skip", String(state.skip));
    return `${location.pathname}?${kept}`;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) },
    });
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        detail = (await response.json()).detail || detail;
      } catch (error) {
        // not JSON: keep the status line
      }
      if (response.status === 401 && authEnabled) detail += " (enter a bearer token above)";
      throw new Error(detail);
    }
    return response;
  }

  // --- loading a page --------------------------------------------------------------------
  async function load(focusIndex) {
    const values = formValues();
    history.replaceState(null, "", pageAddress(values));
    status.textContent = "Loading…";
    releaseBlobs();
    try {
      const response = await api(`/images?${apiParameters(values)}`);
      const page = await response.json();
      state.items = page.items;
      state.total = page.total;
      render(focusIndex);
    } catch (error) {
      state.items = [];
      state.total = 0;
      grid.replaceChildren();
      status.textContent = `Error: ${error.message}`;
      updatePager();
    }
  }

  function render(focusIndex) {
    grid.replaceChildren(...state.items.map(tile));
    if (state.items.length === 0) {
      status.textContent = state.total ? "No images on this page" : "No images match";
    } else {
      const last = state.skip + state.items.length;
      status.textContent = `${state.skip + 1}–${last} of ${state.total}`;
    }
    updatePager();
    if (focusIndex !== undefined) focusTile(focusIndex === "last" ? state.items.length - 1 : focusIndex);
  }

  function tile(item, index) {
    const entry = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tile";
    button.dataset.index = String(index);
    const name = item.file.split("/").pop();
    button.setAttribute("aria-label", `${item.file}${item.width ? `, ${item.width}×${item.height}` : ""}`);
    const picture = document.createElement("img");
    picture.alt = "";
    picture.loading = "lazy";
    picture.width = Number(thumbnailSize);
    picture.height = Number(thumbnailSize);
    showPicture(picture, thumbnailUrl(item, thumbnailSize));
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = name;
    button.append(picture, caption);
    button.addEventListener("click", () => openDetail(index));
    entry.append(button);
    return entry;
  }

  const thumbnailUrl = (item, size) => `/images/${item._id}/thumbnail?size=${size}`;

  async function showPicture(img, url) {
    img.onerror = () => img.classList.add("broken");
    if (!token()) {
      img.src = url;
      return;
    }
    try {
      const response = await api(url, { headers: { Accept: "image/webp,image/jpeg" } });
      const blobUrl = URL.createObjectURL(await response.blob());
      state.blobs.push(blobUrl);
      img.src = blobUrl;
    } catch (error) {
      img.classList.add("broken");
    }
  }

  function releaseBlobs() {
    for (const url of state.blobs) URL.revokeObjectURL(url);
    state.blobs = [];
  }

  // --- pages -----------------------------------------------------------------------------
  function updatePager() {
    previousButton.disabled = state.skip <= 0;
    nextButton.disabled = state.skip + state.items.length >= state.total;
  }

  function goToPage(direction, focusIndex) {
    const skip = state.skip + direction * state.limit;
    if (skip < 0 || (direction > 0 && skip >= state.total)) return;
    form.elements.skip.value = String(Math.max(0, skip));
    load(focusIndex);
  }

  // --- keyboard in the grid --------------------------------------------------------------
  function columns() {
    const template = getComputedStyle(grid).gridTemplateColumns;
    return Math.max(1, template.split(" ").filter(Boolean).length);
  }

  function focusTile(index) {
    const tiles = grid.querySelectorAll(".tile");
    if (tiles.length) tiles[Math.min(Math.max(index, 0), tiles.length - 1)].focus();
  }

  grid.addEventListener("keydown", (event) => {
    const current = event.target.closest(".tile");
    if (!current) return;
    const index = Number(current.dataset.index);
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
    if (event.key in moves) {
      event.preventDefault();
      const target = index + moves[event.key];
      if (target >= state.items.length) goToPage(1, 0);
      else if (target < 0) goToPage(-1, "last");
      else focusTile(target);
    }
  });

  document.addEventListener("keydown", (event) => {
    if (dialog.open || event.target.closest("input, select, textarea")) return;
    if (event.key === "PageDown") {
      event.preventDefault();
      goToPage(1, 0);
    } else if (event.key === "PageUp") {
      event.preventDefault();
      goToPage(-1, 0);
    }
  });

  // --- the detail view -------------------------------------------------------------------
  function openDetail(index) {
    const item = state.items[index];
    if (!item) return;
    state.current = index;
    detailTitle.textContent = item.file;
    detailJson.textContent = JSON.stringify(item, null, 2);
    detailImage.removeAttribute("src");
    detailImage.classList.remove("broken");
    detailImage.alt = `Preview of ${item.file}`;
    showPicture(detailImage, thumbnailUrl(item, detailSize));
    downloadLink.href = `/images/${item._id}/file`;
    downloadLink.setAttribute("download", item.file.split("/").pop());
    document.getElementById("detail-previous").disabled = index <= 0;
    document.getElementById("detail-next").disabled = index >= state.items.length - 1;
    if (!dialog.open) dialog.showModal();
    downloadLink.focus();
  }

  function closeDetail() {
    if (dialog.open) dialog.close();
  }

  dialog.addEventListener("close", () => focusTile(state.current));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") openDetail(state.current + 1);
    else if (event.key === "ArrowLeft") openDetail(state.current - 1);
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) closeDetail();
  });
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.getElementById("detail-previous").addEventListener("click", () => openDetail(state.current - 1));
  document.getElementById("detail-next").addEventListener("click", () => openDetail(state.current + 1));

  downloadLink.addEventListener("click", async (event) => {
    if (!token()) return; // a plain link: the browser downloads the file itself
    event.preventDefault();
    const item = state.items[state.current];
    try {
      await downloadWithToken(item);
    } catch (error) {
      status.textContent = `Download failed: ${error.message}`;
    }
  });

  // A signed link lets the browser stream the download; without one, the file comes as a blob.
  async function downloadWithToken(item) {
    const name = item.file.split("/").pop();
    let href = null;
    try {
      const links = await (await api(`/images/${item._id}/url`, { method: "POST" })).json();
      href = links.file || null;
    } catch (error) {
      href = null;
    }
    let blobUrl = null;
    if (!href) {
      const response = await api(`/images/${item._id}/file`, { headers: { Accept: "*/*" } });
      blobUrl = URL.createObjectURL(await response.blob());
      href = blobUrl;
    }
    const link = document.createElement("a");
    link.href = href;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    if (blobUrl) setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
  }

  // --- start -----------------------------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.elements.skip.value = "0";
    load();
  });
  previousButton.addEventListener("click", () => goToPage(-1));
  nextButton.addEventListener("click", () => goToPage(1));
  setUpTokenBox();
  load();
})();
