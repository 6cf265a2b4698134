# The node image. Node 24 LTS; the app runs TypeScript by Node's own type stripping (no build step).
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
# The node's memory settings, the same as `npm start`'s in package.json (README, "Memory of a
# node"; test/start-command.test.ts holds the two equal).
ENV MALLOC_MMAP_THRESHOLD_=131072
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY actors ./actors
COPY runtime ./runtime
COPY adapters ./adapters
COPY http ./http
COPY config ./config
COPY main.ts node.ts ./
USER node
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "main.ts"]
