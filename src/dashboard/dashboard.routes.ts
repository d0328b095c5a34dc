import path from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync } from "fastify";

// Plain files, no build step: the page, its script modules, one stylesheet and the icon, all same-origin.
const publicDir = path.join(import.meta.dirname, "public");

// Tighter than the docs page's policy: no inline code at all, and nothing but this origin.
const dashboardContentSecurityPolicy = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'none'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    connectSrc: ["'self'"],
    imgSrc: ["'self'", "data:"],
    baseUri: ["'none'"],
    formAction: ["'none'"],
    frameAncestors: ["'none'"],
  },
};

/** The live job dashboard at /dashboard/ (see README "Dashboard"). */
export const dashboardRoutes: FastifyPluginAsync = async (app) => {
  app.addHook("onRoute", (route) => {
    route.config = { ...route.config, helmet: { contentSecurityPolicy: dashboardContentSecurityPolicy } } as typeof route.config;
  });

  await app.register(fastifyStatic, { root: publicDir, prefix: "/dashboard/", wildcard: false, index: false });

  // One route for /dashboard and /dashboard/ (trailing slashes are ignored): the page's relative links
  // need the slash, also behind a proxy that mounts the server under a path.
  app.get("/dashboard", { schema: { hide: true } }, async (request, reply) => {
    const pathname = request.url.split("?")[0]!;
    if (!pathname.endsWith("/")) return reply.redirect(`${path.posix.basename(pathname)}/`, 301);
    return reply.type("text/html; charset=utf-8").sendFile("index.html");
  });

  // Browsers ask for /favicon.ico whatever the page links; the dashboard's icon answers it.
  app.get("/favicon.ico", { schema: { hide: true } }, async (_request, reply) =>
    reply.header("cache-control", "public, max-age=86400").type("image/svg+xml").sendFile("favicon.svg"),
  );
};
