// Compiled with --noEmit by `npm test`: the typed REST surface infers what routes answer.
import { DarkroomClient, DarkroomError, type Schemas } from "../src/index.js";

export async function typed(client: DarkroomClient): Promise<string[]> {
  const project: Schemas["Project"] = await client.get("/api/projects/{id}", { path: { id: "x" } });
  const page = await client.gallery(project.id, { starred: true, limit: 10 });
  const names: string[] = page.items.map((g) => g.id);
  const made = await client.createGeneration({ project_id: project.id, location: "/media/a.png" });
  names.push(made.id);
  // @ts-expect-error: a route that does not exist
  await client.get("/api/nothing");
  // @ts-expect-error: a required body field left out
  await client.createProject({ aspect_ratio: "1:1" });
  names.push((await client.createProject({ name: "n" })).id);
  try {
    await client.generation("x");
  } catch (error) {
    if (error instanceof DarkroomError) names.push(error.code, error.body.message);
  }
  return names;
}
