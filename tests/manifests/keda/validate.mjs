// Validates every ScaledObject of the JSON List on standard input with the model of
// @kubernetes-models/keda (its schema, generated from KEDA's Go API types); prints one line per
// problem and exits 1 when there is any.
import fs from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const list = JSON.parse(fs.readFileSync(0, "utf8"));
let problems = 0;
for (const document of list.items.filter((item) => item.kind === "ScaledObject")) {
  try {
    new ScaledObject(document).validate();
  } catch (error) {
    problems += 1;
    console.log(`${document.metadata.name}: ${error.message}`);
  }
}
process.exit(problems ? 1 : 0);
