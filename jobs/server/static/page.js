// The vidx search page: a query to /search, results as thumbnails at their best moment, a player.
"use strict";

const $ = (id) => document.getElementById(id);
const RESULTS = 12; // videos per search: a few rows of the grid
const CAPTIONS = 5; // captions shown for one video
let metadataColumns = []; // the manifest's columns, shown on each result
let videosCollection = null; // the collection serving the videos, for /query
// The other videos of a duplicate group (`vidx duplicates`, served by `vidx load` as duplicate_group).
const GROUP_VIDEOS = "SELECT video_id, count(*) AS segments FROM {videos} WHERE duplicate_group = :group "
  + "GROUP BY video_id ORDER BY video_id";

async function api(path, body) {
  const options = {credentials: "same-origin"};
  if (body instanceof FormData) {
    Object.assign(options, {method: "POST", body});
  } else if (body !== undefined) {
    Object.assign(options, {method: "POST", body: JSON.stringify(body), headers: {"content-type": "application/json"}});
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    $("token").hidden = false;
    throw new Error("This server asks for its access token.");
  }
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || describeInvalid(answer.detail) || response.statusText);
  return answer;
}

function describeInvalid(detail) {
  // FastAPI's 422: [{loc: [..., field], msg}]
  return Array.isArray(detail) ? detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ") : detail;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

const seconds = (value) => `${Number(value || 0).toFixed(1)} s`;

function element(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function loadLibrary() {
  try {
    const library = await api("/library");
    if (!library.videos) {
      $("library").textContent = "No videos are served yet: run `vidx load` first.";
      return;
    }
    metadataColumns = library.videos.metadata;
    videosCollection = library.videos.collection;
    const model = library.videos.model.name;
    $("library").textContent = `${library.videos.rows} segments indexed with the ${model} model`;
    $("target").querySelector("[value=captions]").disabled = !library.captions;
    const corpora = Object.keys(library.corpora || {}).filter((name) => library.corpora[name]);
    $("target").append(...corpora.map((name) => {
      const option = element("option", `${name} (video → text)`);
      option.value = name;
      return option;
    }));
  } catch (error) {
    $("library").textContent = "";
    showError(error.message);
  }
}

function searchBody() {
  const fields = {k: RESULTS, where: $("where").value.trim(), target: $("target").value, per_video: true};
  const clip = $("clip").files[0];
  if (!clip) return {...fields, text: $("text").value.trim()};
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append("clip", clip);
  return form;
}

async function search(event) {
  event.preventDefault();
  if (!$("text").value.trim() && !$("clip").files.length) {
    showError("Describe a moment, or choose a clip.");
    return;
  }
  showError("");
  $("status").textContent = "Searching…";
  try {
    const hits = await api("/search", searchBody());
    const target = $("target").value;
    const videos = target === "videos";
    showVideos(videos ? hits : []);
    showCaptions($("captions"), videos ? [] : hits);
    $("status").textContent = `${hits.length} ${videos || target === "captions" ? target : "texts"}`;
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
}

function metadataText(hit) {
  return metadataColumns.filter((name) => hit[name] != null).map((name) => `${name}: ${hit[name]}`).join(" · ");
}

function showVideos(hits) {
  const cards = hits.map((hit) => {
    const card = $("hit").content.cloneNode(true);
    const image = card.querySelector("img");
    image.src = `/thumbnails/${encodeURIComponent(hit.key)}`;
    image.alt = `${hit.video_id} at ${seconds(hit.start_s)}`;
    card.querySelector(".video-id").textContent = hit.video_id;
    card.querySelector(".score").textContent = hit.score.toFixed(3);
    card.querySelector(".moment").textContent = `${seconds(hit.start_s)} – ${seconds(hit.end_s)}`;
    card.querySelector(".metadata").textContent = metadataText(hit);
    card.querySelector("button").addEventListener("click", () => play(hit));
    return card;
  });
  $("results").replaceChildren(...cards);
}

function showCaptions(list, hits) {
  list.replaceChildren(...hits.map((hit) => {
    const item = element("li", "");
    const source = hit.video_id ?? hit.text_id; // a caption's video, or a corpus text's id
    item.append(element("span", hit.text, "caption"), element("span", `${source} · ${hit.score.toFixed(3)}`, "score"));
    return item;
  }));
}

function play(hit) {
  $("player-title").textContent = hit.video_id;
  $("player-meta").textContent = [`from ${seconds(hit.start_s)}`, metadataText(hit)].filter(Boolean).join(" · ");
  $("video").src = `/videos/${encodeURIComponent(hit.video_id)}#t=${hit.start_s || 0}`;
  $("describe").onclick = () => describeVideo(hit.video_id);
  $("describe").hidden = describeTarget() === null;
  $("video-captions").replaceChildren();
  showDuplicates(hit);
  $("player").showModal();
  $("video").play().catch(() => {}); // autoplay may be refused: the controls remain
}

async function showDuplicates(hit) {
  $("duplicates").hidden = true;
  $("duplicate-videos").replaceChildren();
  if (hit.duplicate_group == null) return; // duplicates never computed
  try {
    const sql = GROUP_VIDEOS.replace("{videos}", videosCollection);
    const rows = await api("/query", {sql, params: {group: hit.duplicate_group}});
    const others = rows.filter((row) => row.video_id !== hit.video_id);
    $("duplicate-videos").replaceChildren(...others.map((row) => element("li", row.video_id)));
    $("duplicates").hidden = !others.length;
  } catch (error) {
    $("duplicate-videos").replaceChildren(element("li", error.message, "error"));
    $("duplicates").hidden = false;
  }
}

// What describes a video: the texts searched for (a corpus or the captions), else its captions, else a corpus.
function describeTarget() {
  const usable = [...$("target").options].filter((option) => option.value !== "videos" && !option.disabled);
  const chosen = usable.find((option) => option.selected) || usable[0];
  return chosen ? chosen.value : null;
}

async function describeVideo(videoId) {
  try {
    const target = describeTarget();
    showCaptions($("video-captions"), await api("/search", {video_id: videoId, target, k: CAPTIONS}));
  } catch (error) {
    $("video-captions").replaceChildren(element("li", error.message, "error"));
  }
}

function useToken(event) {
  event.preventDefault();
  // A cookie, not a header: thumbnails and videos are fetched by the browser itself.
  document.cookie = `vidx_token=${$("token-value").value}; path=/; SameSite=Strict`;
  $("token").hidden = true;
  showError("");
  loadLibrary();
}

$("search").addEventListener("submit", search);
$("token").addEventListener("submit", useToken);
$("text").addEventListener("input", () => { $("clip").value = ""; });
$("clip").addEventListener("change", () => { if ($("clip").files.length) $("text").value = ""; });
$("close").addEventListener("click", () => $("player").close());
$("player").addEventListener("close", () => $("video").pause());
loadLibrary();
