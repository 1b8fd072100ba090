// Drawing pad and prediction view for POST /api/digit.
// The pad is exported as white ink on an opaque black square, the way MNIST digits look;
// the server crops, scales and centres it like MNIST before classifying.
"use strict";

const API_URL = "api/digit";
const INK = "#ffffff";
const PAPER = "#000000";
const LINE_WIDTH = 18;

const FRIENDLY = {
  400: "The model server could not read that image.",
  413: "That image is too large.",
  415: "That file is not a PNG. Please choose a .png image.",
  422: "No digit found in that image.",
  502: "The model server sent a bad answer.",
  503: "The model server is not available right now.",
  504: "The model server took too long to answer.",
};

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const clearButton = document.getElementById("clear");
const predictButton = document.getElementById("predict");
const upload = document.getElementById("upload");
const result = document.getElementById("result");
const sample = document.getElementById("sample");
const sampleEmpty = document.getElementById("sample-empty");
const sampleCaption = document.getElementById("sample-caption");
const prediction = document.getElementById("prediction");
const confidence = document.getElementById("confidence");
const message = document.getElementById("message");
const chart = document.getElementById("chart");

let hasInk = false;
let activePointer = null;
let last = null;
let sampleUrl = null;
let pending = null;
let requestNumber = 0;

function buildChart() {
  for (let digit = 0; digit < 10; digit += 1) {
    const item = document.createElement("li");
    item.className = "bar";
    item.dataset.digit = String(digit);
    item.dataset.probability = "0";
    item.innerHTML =
      '<span class="bar-value"></span>' +
      '<span class="bar-track"><span class="bar-fill"></span></span>' +
      `<span class="bar-label">${digit}</span>`;
    chart.append(item);
  }
}

function resetPad() {
  context.globalCompositeOperation = "source-over";
  context.fillStyle = PAPER;
  context.fillRect(0, 0, pad.width, pad.height);
  context.strokeStyle = INK;
  context.fillStyle = INK;
  context.lineWidth = LINE_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  hasInk = false;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function dot(point) {
  context.beginPath();
  context.arc(point.x, point.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
  context.fill();
}

function segment(from, to) {
  context.beginPath();
  context.moveTo(from.x, from.y);
  context.lineTo(to.x, to.y);
  context.stroke();
}

function onPointerDown(event) {
  if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  activePointer = event.pointerId;
  pad.setPointerCapture(event.pointerId);
  last = padPoint(event);
  dot(last);
  hasInk = true;
}

function onPointerMove(event) {
  if (event.pointerId !== activePointer) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    const point = padPoint(each);
    segment(last, point);
    last = point;
  }
}

function onPointerUp(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  last = null;
  predictDrawing();
}

function padBlob() {
  return new Promise((resolve, reject) => {
    pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("Could not export the drawing."))), "image/png");
  });
}

function showSample(blob, caption, description = caption) {
  if (sampleUrl) URL.revokeObjectURL(sampleUrl);
  sampleUrl = blob ? URL.createObjectURL(blob) : null;
  sample.hidden = !blob;
  sampleEmpty.hidden = Boolean(blob);
  sample.style.backgroundColor = "";
  if (blob) {
    sample.src = sampleUrl;
    sample.alt = description;
  } else {
    sample.removeAttribute("src");
    sample.alt = "";
  }
  sampleCaption.textContent = caption;
  sampleCaption.title = caption;
}

// A transparent PNG's ink can be dark or light; lay it on a backdrop that contrasts with
// the paint, as the server does before classifying it: the same rule (ITU-R 601 luma, mean
// paint weighted by alpha, light at 0.5 or above) as _gray in runtime/preprocessing.py.
function backdropFor(img) {
  const side = 64;
  const copy = document.createElement("canvas");
  copy.width = side;
  copy.height = side;
  const copyContext = copy.getContext("2d", { willReadFrequently: true });
  copyContext.drawImage(img, 0, 0, side, side);
  const data = copyContext.getImageData(0, 0, side, side).data;
  let alphaSum = 0;
  let paintSum = 0;
  for (let index = 0; index < data.length; index += 4) {
    const alpha = data[index + 3] / 255;
    const gray = (0.299 * data[index] + 0.587 * data[index + 1] + 0.114 * data[index + 2]) / 255;
    alphaSum += alpha;
    paintSum += gray * alpha;
  }
  if (alphaSum === 0 || alphaSum === side * side) return "";
  return paintSum / alphaSum >= 0.5 ? "#000000" : "#ffffff";
}

function setState(state, text) {
  result.dataset.state = state;
  message.textContent = text;
}

function resetChart() {
  for (const bar of chart.children) {
    bar.dataset.probability = "0";
    bar.classList.remove("top");
    bar.querySelector(".bar-fill").style.height = "0%";
    bar.querySelector(".bar-value").textContent = "";
    bar.removeAttribute("aria-label");
  }
}

function showIdle(text) {
  prediction.textContent = "–";
  confidence.textContent = "";
  resetChart();
  setState("idle", text);
}

function shortPercent(percent) {
  if (percent < 0.05) return "0";
  return percent < 9.95 ? percent.toFixed(1) : percent.toFixed(0);
}

function longPercent(percent) {
  return percent > 99.9 ? ">99.9%" : `${percent.toFixed(1)}%`;
}

function showPrediction(answer) {
  const top = answer.prediction;
  answer.percentages.forEach((probability, digit) => {
    const bar = chart.children[digit];
    const percent = probability * 100;
    bar.dataset.probability = String(probability);
    bar.classList.toggle("top", digit === top);
    bar.querySelector(".bar-fill").style.height = `${Math.max(percent, 0.5)}%`;
    bar.querySelector(".bar-value").textContent = shortPercent(percent);
    bar.setAttribute("aria-label", `${digit}: ${percent.toFixed(1)}%`);
  });
  prediction.textContent = String(top);
  confidence.textContent = `${longPercent(answer.percentages[top] * 100)} sure`;
  setState("ready", "Keep drawing to change the answer, or Clear to start over.");
}

function showError(text) {
  prediction.textContent = "!";
  confidence.textContent = "";
  resetChart();
  setState("error", text);
}

// 4xx: the page's own wording (the model's messages are terse); 5xx: the UI server's
// message, which names the model server and what to check.
function errorText(status, body) {
  const detail = body && typeof body === "object" ? body.error || body.message : null;
  const friendly = FRIENDLY[status];
  if (!friendly) return `The server answered with an error (HTTP ${status}).${detail ? ` ${detail}` : ""}`;
  if (status === 413 && detail) return `${friendly} ${detail}`;
  if (status >= 500 && body && body.error) return body.error;
  return friendly;
}

function isPrediction(body) {
  return (
    body !== null &&
    typeof body === "object" &&
    Number.isInteger(body.prediction) &&
    Array.isArray(body.percentages) &&
    body.percentages.length === 10 &&
    body.percentages.every((value) => typeof value === "number")
  );
}

// Each request gets a number; answers to anything but the latest are dropped.
function startRequest() {
  if (pending) pending.abort();
  pending = new AbortController();
  requestNumber += 1;
  result.setAttribute("aria-busy", "true");
  setState("loading", "Reading your digit…");
  return { number: requestNumber, signal: pending.signal };
}

function isCurrent(ticket) {
  return ticket.number === requestNumber;
}

function finishRequest(ticket) {
  if (!isCurrent(ticket)) return;
  pending = null;
  result.removeAttribute("aria-busy");
}

async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text ? { error: text.slice(0, 200) } : null;
  }
}

async function classify(ticket, blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  try {
    const response = await fetch(API_URL, { method: "POST", body: form, signal: ticket.signal });
    const body = await readJson(response);
    if (!isCurrent(ticket)) return;
    if (!response.ok) {
      showError(errorText(response.status, body));
    } else if (!isPrediction(body)) {
      showError("The server sent an answer this page does not understand.");
    } else {
      showPrediction(body);
    }
  } catch (error) {
    if (error.name === "AbortError" || !isCurrent(ticket)) return;
    showError("Cannot reach the app server. Check that it is running, then try again.");
  } finally {
    finishRequest(ticket);
  }
}

async function predictDrawing() {
  if (!hasInk) {
    showSample(null, "Your digit");
    showIdle("Draw a digit first.");
    return;
  }
  const ticket = startRequest();
  let blob;
  try {
    blob = await padBlob();
  } catch (error) {
    if (isCurrent(ticket)) showError(error.message);
    finishRequest(ticket);
    return;
  }
  if (!isCurrent(ticket)) return;
  showSample(blob, "Your drawing", "Your drawing, as sent to the model");
  await classify(ticket, blob, "drawing.png");
}

function onUpload() {
  const file = upload.files && upload.files[0];
  upload.value = "";
  if (!file) return;
  const ticket = startRequest();
  showSample(file, file.name, `Uploaded image ${file.name}`);
  classify(ticket, file, file.name);
}

function onClear() {
  if (pending) pending.abort();
  requestNumber += 1;
  pending = null;
  result.removeAttribute("aria-busy");
  resetPad();
  showSample(null, "Your digit");
  showIdle("Cleared. Draw a digit to see what the model thinks.");
}

buildChart();
resetPad();
pad.addEventListener("pointerdown", onPointerDown);
pad.addEventListener("pointermove", onPointerMove);
pad.addEventListener("pointerup", onPointerUp);
pad.addEventListener("pointercancel", onPointerUp);
pad.addEventListener("lostpointercapture", onPointerUp);
pad.addEventListener("contextmenu", (event) => event.preventDefault());
clearButton.addEventListener("click", onClear);
predictButton.addEventListener("click", predictDrawing);
upload.addEventListener("change", onUpload);
sample.addEventListener("load", () => {
  sample.style.backgroundColor = backdropFor(sample);
});
