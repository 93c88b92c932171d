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
          include_executables_for: [:unix]
        ]
      ]
    ]
  end

  def application do
    # :ssl in the release: what TLS distribution (`app_dist_tls`) needs at boot.
    [extra_applications: [:logger, :ssl], mod: {Demo.Application, []}]
  end
end
