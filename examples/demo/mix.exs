defmodule Demo.MixProject do
  use Mix.Project

  # A deliberately plain release: no clustering library, no dependencies at all.
  # The cluster is formed from the outside by the beamfleet agent.
  def project do
    [
      app: :demo,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: [],
      releases: [
        demo: [
          include_erts: false,
          include_executables_for: [:unix],
          steps: [:assemble, &cookie_from_file/1]
        ]
      ]
    ]
  end

  # An Elixir release passes its cookie to erl on the command line (`--cookie`), where
  # any `ps` on the host shows it, and ships a random build-time cookie in
  # releases/COOKIE. This step makes the start script pass --cookie only when
  # RELEASE_COOKIE is set and drops the shipped file: the demo's cookie is a Docker
  # secret that erl itself reads through $HOME/.erlang.cookie (see docker-entrypoint.sh).
  defp cookie_from_file(release) do
    bin = Path.join([release.path, "bin", to_string(release.name)])
    original = File.read!(bin)

    patched =
      original
      |> String.replace(
        ~s|RELEASE_COOKIE="${RELEASE_COOKIE:-"$(cat "$RELEASE_ROOT/releases/COOKIE")"}"|,
        ~s|RELEASE_COOKIE="${RELEASE_COOKIE:-}"|
      )
      |> String.replace(
        ~s|--cookie "$RELEASE_COOKIE"|,
        ~s|${RELEASE_COOKIE:+--cookie "$RELEASE_COOKIE"}|
      )

    if patched == original or String.contains?(patched, "releases/COOKIE") do
      Mix.raise("the release start script changed shape: cannot keep the cookie off argv")
    end

    File.write!(bin, patched)
    File.rm!(Path.join([release.path, "releases", "COOKIE"]))
    release
  end

  def application do
    [extra_applications: [:logger], mod: {Demo.Application, []}]
  end
end
