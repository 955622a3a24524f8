// The model picker: shown when the relay offers more than one model (/api/config), and the
// choice kept for next time.
const KEY = "chat-relay:model";

let offered = [];
let select = null;

export function setUpModels(element, config) {
  select = element;
  offered = Array.isArray(config.models) ? config.models : [];
  if (offered.length < 2) return;
  for (const name of offered) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.append(option);
  }
  const kept = localStorage.getItem(KEY);
  select.value = offered.includes(kept) ? kept : config.default_model;
  select.addEventListener("change", () => localStorage.setItem(KEY, select.value));
  select.hidden = false;
}

// The model to ask for, or undefined: the relay's default.
export function chosenModel() {
  return offered.length > 1 && select ? select.value : undefined;
}
